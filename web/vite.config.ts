import { defineConfig } from 'vite';

// The dashboard is built into the Go package that embeds it.
export default defineConfig({
  base: '/',
  build: { outDir: '../internal/dashboard/dist', emptyOutDir: true, chunkSizeWarningLimit: 2000 },
});
