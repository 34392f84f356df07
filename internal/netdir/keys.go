package netdir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/atomicfile"
	"github.com/soulfra/calnet/internal/limitedfile"
	"github.com/soulfra/calnet/internal/strictjson"
)

// File names inside an identity directory.
const (
	KeyFile       = "identity.key"
	PublicFile    = "identity.pub"
	BlessingFile  = "blessing.json"
	SoulChainFile = "soul-chain.sig"
)

// Key protection modes recorded in network.json.
const (
	// ProtectSealed: keys are encrypted to an age post-quantum hybrid
	// identity that is itself sealed (kek.sealed) by the network's root
	// sealing key (package seal: a passphrase, an HSM key, or seal.key).
	ProtectSealed = "age-hybrid-pq-sealed"
	// ProtectHybrid (networks made before sealing): the age identity lies
	// in clear in kek.age. MigrateToSealed moves such a network on.
	ProtectHybrid = "age-hybrid-pq"
	// ProtectPassphrase (networks made by `calnet init` with a passphrase
	// before sealing): each key is encrypted to an age scrypt passphrase
	// recipient.
	ProtectPassphrase = "age-scrypt-passphrase"
)

// protector seals and opens private keys for one network.
type protector struct {
	recipient age.Recipient
	identity  age.Identity
}

// newProtector makes the protector for a mode. For the hybrid mode the age
// identity lives in kek.age; for the passphrase mode pass is required.
func newProtector(dir, mode, pass string, create bool, scryptWork int) (*protector, error) {
	switch mode {
	case ProtectPassphrase:
		if pass == "" {
			return nil, errors.New("this network's keys are sealed with a passphrase: set CALNET_PASSPHRASE or --passphrase-file")
		}
		r, err := age.NewScryptRecipient(pass)
		if err != nil {
			return nil, err
		}
		if scryptWork > 0 {
			r.SetWorkFactor(scryptWork)
		}
		id, err := age.NewScryptIdentity(pass)
		if err != nil {
			return nil, err
		}
		return &protector{recipient: r, identity: id}, nil
	case ProtectHybrid:
		path := filepath.Join(dir, legacyKEKFile)
		if create {
			id, err := age.GenerateHybridIdentity()
			if err != nil {
				return nil, err
			}
			if err := atomicfile.Write(path, []byte(id.String()+"\n"), 0o600); err != nil {
				return nil, err
			}
			return &protector{recipient: id.Recipient(), identity: id}, nil
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("key-encryption identity: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%s: mode %v is readable by others, want 0600", path, st.Mode().Perm())
		}
		b, err := limitedfile.Read(path, maxKEKFile)
		if err != nil {
			return nil, err
		}
		id, err := age.ParseHybridIdentity(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &protector{recipient: id.Recipient(), identity: id}, nil
	}
	return nil, fmt.Errorf("key_protection %q is unknown", mode)
}

// publicFile is identity.pub.
type publicFile struct {
	ID   identity.ID         `json:"id"`
	Keys *identity.PublicKey `json:"keys"`
}

// writeIdentity creates dir (0700) with a fresh sealed key and identity.pub.
func (p *protector) writeIdentity(dir string, k *identity.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := identity.SaveKeyFile(filepath.Join(dir, KeyFile), k, p.recipient); err != nil {
		return err
	}
	b, err := json.MarshalIndent(publicFile{ID: k.Public().ID(), Keys: k.Public()}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, PublicFile), append(b, '\n'), 0o644)
}

func (p *protector) loadKey(dir string) (*identity.PrivateKey, error) {
	return identity.LoadKeyFile(filepath.Join(dir, KeyFile), p.identity)
}

// ReadPublic reads identity.pub of an identity directory and checks that
// its ID matches its keys.
func ReadPublic(dir string) (*identity.PublicKey, error) {
	b, err := limitedfile.Read(filepath.Join(dir, PublicFile), identity.MaxPublicKeyJSON)
	if err != nil {
		return nil, err
	}
	var pf publicFile
	if err := strictjson.Unmarshal(b, identity.MaxPublicKeyJSON, &pf); err != nil {
		return nil, fmt.Errorf("%s: %w", PublicFile, err)
	}
	if pf.Keys == nil {
		return nil, fmt.Errorf("%s: keys: missing", PublicFile)
	}
	if pf.Keys.ID() != pf.ID {
		return nil, fmt.Errorf("%s: id %s is not the ID of its keys (%s)", PublicFile, pf.ID, pf.Keys.ID())
	}
	return pf.Keys, nil
}
