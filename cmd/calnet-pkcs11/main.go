// Command calnet-pkcs11 is calnet's PKCS#11 helper: calnet starts it to
// use a key on an HSM token and speaks JSON lines with it over standard
// input and output (package internal/hsm). It is built with cgo
// (CGO_ENABLED=1), unlike calnet, and loads the token's module so that
// calnet never does.
package main

import (
	"fmt"
	"os"

	"github.com/soulfra/calnet/internal/hsm/p11"
)

func main() {
	if err := p11.Serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "calnet-pkcs11:", err)
		os.Exit(1)
	}
}
