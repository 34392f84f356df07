package cli

import (
	"errors"

	"github.com/soulfra/calnet/internal/seal"
)

func newPKCS11Protector(ref seal.PKCS11Ref, pin []byte) (checkedProtector, error) {
	return nil, errors.New("--seal pkcs11: not available yet")
}
