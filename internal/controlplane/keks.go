package controlplane

import (
	"context"
	"fmt"
	"strings"

	"filippo.io/age"

	"github.com/soulfra/calnet/internal/seal"
	"github.com/soulfra/calnet/internal/store"
)

// Each Cal's key-encryption identity (the age hybrid identity its
// identity.key and vault are encrypted to) is kept in the state store
// sealed by the network's root sealing key, bound to the Cal's ID: the
// store alone (a copy of state.db, a backup) reveals none of them.

// kekPurpose is the sealed purpose of a Cal's key-encryption identity.
func kekPurpose(id string) string { return "cal-kek:" + id }

// newKEK makes a Cal's key-encryption identity and stores it sealed.
func (s *Server) newKEK(ctx context.Context, id string) (*age.HybridIdentity, error) {
	k, err := age.GenerateHybridIdentity()
	if err != nil {
		return nil, err
	}
	sealed, err := s.root.Seal(kekPurpose(id), []byte(k.String()))
	if err != nil {
		return nil, fmt.Errorf("seal the key-encryption identity of %s: %w", id, err)
	}
	err = s.store.Update(ctx, func(tx store.Tx) error { return tx.Put(bucketKEK, id, sealed) })
	return k, err
}

// kekSecret reads and unseals a Cal's key-encryption identity, as the
// text the Cal's runtime parses. The caller wipes it when done.
func (s *Server) kekSecret(ctx context.Context, id string) ([]byte, error) {
	var sealed []byte
	if err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		sealed, err = tx.Get(bucketKEK, id)
		return err
	}); err != nil {
		return nil, fmt.Errorf("key-encryption identity of %s: %w", id, err)
	}
	plain, err := s.root.Open(kekPurpose(id), sealed)
	if err != nil {
		return nil, fmt.Errorf("key-encryption identity of %s: %w", id, err)
	}
	return plain, nil
}

// kek is kekSecret parsed.
func (s *Server) kek(ctx context.Context, id string) (*age.HybridIdentity, error) {
	plain, err := s.kekSecret(ctx, id)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	k, err := age.ParseHybridIdentity(strings.TrimSpace(string(plain)))
	if err != nil {
		return nil, fmt.Errorf("key-encryption identity of %s: %w", id, err)
	}
	return k, nil
}

// renameKEK moves a pending Cal's key-encryption identity to its ID,
// sealing it again for the new ID.
func (s *Server) renameKEK(ctx context.Context, from, to string) error {
	return s.store.Update(ctx, func(tx store.Tx) error {
		v, err := tx.Get(bucketKEK, from)
		if err != nil {
			return err
		}
		plain, err := s.root.Open(kekPurpose(from), v)
		if err != nil {
			return err
		}
		defer clear(plain)
		resealed, err := s.root.Seal(kekPurpose(to), plain)
		if err != nil {
			return err
		}
		if err := tx.Put(bucketKEK, to, resealed); err != nil {
			return err
		}
		return tx.Delete(bucketKEK, from)
	})
}

// sealStoredKEKs seals, in one transaction, every key-encryption identity
// a control plane from before sealing stored in clear, and checks that
// each sealed one opens. It returns how many it sealed. A value that is
// neither a sealed blob nor an age identity refuses the start, naming the
// Cal: nothing is rewritten then.
func (s *Server) sealStoredKEKs(ctx context.Context) (int, error) {
	n := 0
	err := s.store.Update(ctx, func(tx store.Tx) error {
		n = 0
		clearKEKs := map[string][]byte{}
		if err := tx.ForEach(bucketKEK, "", func(id string, v []byte) error {
			if seal.IsSealed(v) {
				plain, err := s.root.Open(kekPurpose(id), v)
				if err != nil {
					return fmt.Errorf("state.db: key-encryption identity of %s: %w", id, err)
				}
				clear(plain)
				return nil
			}
			if _, err := age.ParseHybridIdentity(strings.TrimSpace(string(v))); err != nil {
				return fmt.Errorf("state.db: key-encryption identity of %s is neither sealed nor an age identity: %w", id, err)
			}
			clearKEKs[id] = append([]byte(nil), v...)
			return nil
		}); err != nil {
			return err
		}
		for id, v := range clearKEKs {
			sealed, err := s.root.Seal(kekPurpose(id), []byte(strings.TrimSpace(string(v))))
			clear(v)
			if err != nil {
				return err
			}
			if err := tx.Put(bucketKEK, id, sealed); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
