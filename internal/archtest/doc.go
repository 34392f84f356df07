// Package archtest holds tests that keep the repository's architecture:
// every package documented, core packages free of heavy dependencies, and
// os.Exit only in main.
package archtest
