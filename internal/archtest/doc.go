// Package archtest holds tests that keep the repository's architecture:
// every package documented, core packages free of heavy dependencies,
// os.Exit only in main, and a Cal's directories touched only through
// internal/caldir (DESIGN.md section 7).
package archtest
