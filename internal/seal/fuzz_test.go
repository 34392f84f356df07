package seal

import (
	"context"
	"testing"
)

func FuzzOpenBlob(f *testing.F) {
	r, err := Create(context.Background(), f.TempDir(), "net-a", File{})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := r.Seal("p", []byte("secret"))
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte(blobMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		plain, err := r.Open("p", b)
		if err == nil && string(plain) != "secret" {
			t.Fatalf("opened a forged blob to %q", plain)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	ctx := context.Background()
	for _, p := range []Protector{File{}, pass("correct horse battery")} {
		dir := f.TempDir()
		if _, err := Create(ctx, dir, "net-a", p); err != nil {
			f.Fatal(err)
		}
		cfg, err := ReadConfig(dir)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := marshalConfig(cfg)
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"network":"n","mode":"pkcs11","pkcs11":{"module":"/x.so","token":"t","key":"k"},"wrapped_root":"AAAA"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			return
		}
		if cfg.Mode == ModePassphrase {
			// A parsed config is bounded: unwrapping with it must not
			// take the host's memory (the limits hold) and must fail.
			if cfg.KDF.MemoryKiB > 1<<16 || cfg.KDF.Time > 4 {
				return
			}
			out := make([]byte, RootSize)
			_ = pass("correct horse battery").Unwrap(ctx, "", cfg, out)
		}
	})
}
