package cli

import (
	"github.com/soulfra/calnet/internal/hsm"
	"github.com/soulfra/calnet/internal/seal"
)

// newPKCS11Protector is the pkcs11 seal with the token's PIN; the token is
// driven by the calnet-pkcs11 helper found next to calnet or on PATH.
func newPKCS11Protector(ref seal.PKCS11Ref, pin []byte) (checkedProtector, error) {
	return &hsm.Protector{Ref: ref, PIN: append([]byte(nil), pin...)}, nil
}
