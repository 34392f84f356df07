package trust

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/strictjson"
)

// Blessing format versions. Version 2 added the disk quota; a version 1
// blessing (issued before it) still verifies, and reads as the largest
// disk quota, MaxDiskBytes: it predates the dimension and limits nothing
// in it, so the ledgers of networks made before keep replaying.
const (
	BlessingVersion1 = 1
	BlessingVersion2 = 2
	// BlessingVersion is the version Issue signs.
	BlessingVersion = BlessingVersion2
)

// Quota is the share of resources a Cal and its whole subtree may use.
type Quota struct {
	CPUMillis   int64 `json:"cpu_millis"`
	MemoryBytes int64 `json:"memory_bytes"`
	PIDs        int64 `json:"pids"`
	// DiskBytes bounds what the Cal may store in its private directory
	// (/data), enforced by the kernel.
	DiskBytes int64 `json:"disk_bytes"`
}

// Within reports the first field of q that exceeds o, or "" if none does.
func (q Quota) exceeds(o Quota) string {
	switch {
	case q.CPUMillis > o.CPUMillis:
		return fmt.Sprintf("quota.cpu_millis %d exceeds the parent's %d", q.CPUMillis, o.CPUMillis)
	case q.MemoryBytes > o.MemoryBytes:
		return fmt.Sprintf("quota.memory_bytes %d exceeds the parent's %d", q.MemoryBytes, o.MemoryBytes)
	case q.PIDs > o.PIDs:
		return fmt.Sprintf("quota.pids %d exceeds the parent's %d", q.PIDs, o.PIDs)
	case q.DiskBytes > o.DiskBytes:
		return fmt.Sprintf("quota.disk_bytes %d exceeds the parent's %d", q.DiskBytes, o.DiskBytes)
	}
	return ""
}

// Constraints limit what a blessed Cal and its descendants may do. They
// only tighten down a chain.
type Constraints struct {
	// MaxDepth is the deepest any Cal of this subtree may sit (Master = 1).
	MaxDepth int
	// MaxChildren is how many children this Cal may bless; each child's
	// blessing carries a serial in 1..MaxChildren.
	MaxChildren int
	Quota       Quota
	NotBefore   time.Time
	NotAfter    time.Time
}

// RawPublicKey is an encoded hybrid public key, kept unparsed until a
// verifier needs it (parsing the ML-DSA half is expensive).
type RawPublicKey struct {
	Ed25519 []byte
	MLDSA   []byte
}

// RawKey returns the encoded halves of a parsed key.
func RawKey(k *identity.PublicKey) RawPublicKey {
	return RawPublicKey{Ed25519: k.Ed25519(), MLDSA: k.MLDSA()}
}

// ID returns the Cal ID of the key.
func (r RawPublicKey) ID() identity.ID { return identity.IDFromKeys(r.Ed25519, r.MLDSA) }

// Blessing is a signed delegation from a parent (or the genesis root, for
// the Master Cal) to a child Cal.
type Blessing struct {
	_       [0]func()
	version int
	network identity.NetworkID
	// parent is the issuing Cal; zero when the issuer is the genesis root.
	parent       identity.ID
	child        identity.ID
	childKey     RawPublicKey
	depth        int
	serial       int
	perms        Permissions
	cons         Constraints
	canPropagate bool
	nonce        []byte
	issuedAt     time.Time
	sig          *identity.Signature

	canonical []byte
	digest    [32]byte
}

// A Blessing is immutable once issued or parsed: its digest, which keys
// the verifier's cache, always matches its content.

// Version returns the format version.
func (b *Blessing) Version() int { return b.version }

// Network returns the network the blessing belongs to.
func (b *Blessing) Network() identity.NetworkID { return b.network }

// Parent returns the issuing Cal; zero for a genesis blessing.
func (b *Blessing) Parent() identity.ID { return b.parent }

// Child returns the blessed Cal.
func (b *Blessing) Child() identity.ID { return b.child }

// ChildKey returns the blessed Cal's encoded public key.
func (b *Blessing) ChildKey() RawPublicKey { return b.childKey }

// Depth returns the blessed Cal's depth (the Master Cal has depth 1).
func (b *Blessing) Depth() int { return b.depth }

// Serial returns the child's index among its parent's children (from 1).
func (b *Blessing) Serial() int { return b.serial }

// Permissions returns what the blessing grants.
func (b *Blessing) Permissions() Permissions { return b.perms }

// Constraints returns the limits the blessing sets.
func (b *Blessing) Constraints() Constraints { return b.cons }

// CanPropagate reports whether the child may bless children (it holds spawn).
func (b *Blessing) CanPropagate() bool { return b.canPropagate }

// IssuedAt returns when the blessing was signed.
func (b *Blessing) IssuedAt() time.Time { return b.issuedAt }

// Nonce returns a copy of the blessing's nonce.
func (b *Blessing) Nonce() []byte { return append([]byte(nil), b.nonce...) }

// IsGenesis reports whether b was issued by the genesis root.
func (b *Blessing) IsGenesis() bool { return b.depth == 1 }

// Digest identifies the signed blessing: SHA-256 over its canonical
// encoding and signature.
func (b *Blessing) Digest() [32]byte { return b.digest }

// Canonical returns the bytes the signature covers.
func (b *Blessing) Canonical() []byte { return b.canonical }

func (b *Blessing) encode() []byte {
	c := newCanon(fmt.Sprintf("calnet/blessing/v%d\n", b.version))
	c.u8(uint8(b.version))
	c.raw(b.network[:])
	c.bool(b.IsGenesis())
	c.raw(b.parent[:])
	c.raw(b.child[:])
	c.bytes(b.childKey.Ed25519)
	c.bytes(b.childKey.MLDSA)
	c.u32(uint32(b.depth))
	c.u32(uint32(b.serial))
	c.u32(uint32(b.perms))
	c.u32(uint32(b.cons.MaxDepth))
	c.u32(uint32(b.cons.MaxChildren))
	c.i64(b.cons.Quota.CPUMillis)
	c.i64(b.cons.Quota.MemoryBytes)
	c.i64(b.cons.Quota.PIDs)
	if b.version >= BlessingVersion2 {
		c.i64(b.cons.Quota.DiskBytes)
	}
	c.time(b.cons.NotBefore)
	c.time(b.cons.NotAfter)
	c.bool(b.canPropagate)
	c.bytes(b.nonce)
	c.time(b.issuedAt)
	return c.b
}

// seal computes the canonical encoding and digest after fields change.
func (b *Blessing) seal() {
	b.canonical = b.encode()
	h := sha256.New()
	h.Write(b.canonical)
	if b.sig != nil {
		h.Write(b.sig.Ed25519)
		h.Write(b.sig.MLDSA)
	}
	copy(b.digest[:], h.Sum(nil))
}

// Grant describes a blessing to issue.
type Grant struct {
	Network     identity.NetworkID
	Parent      *Blessing // nil when the genesis root blesses the Master Cal
	ChildKey    *identity.PublicKey
	Serial      int
	Permissions Permissions
	Constraints Constraints
	IssuedAt    time.Time
	Rand        io.Reader // nonce source; crypto/rand when nil

	version int // the format to sign; BlessingVersion when zero (tests sign older ones)
}

// Issue signs a blessing for g with the parent's signer. It enforces the
// same rules the verifier does, so a parent cannot issue a blessing that
// would fail verification for escalation, depth or children limits.
func Issue(signer identity.Signer, g Grant) (*Blessing, error) { return issue(signer, g, true) }

// issue signs a blessing; with check false it skips the attenuation rules,
// which only tests use, to build the failing vectors a verifier must reject.
func issue(signer identity.Signer, g Grant, check bool) (*Blessing, error) {
	b := &Blessing{
		version:      cmp.Or(g.version, BlessingVersion),
		network:      g.Network,
		child:        g.ChildKey.ID(),
		childKey:     RawKey(g.ChildKey),
		depth:        1,
		serial:       g.Serial,
		perms:        g.Permissions,
		cons:         g.Constraints,
		canPropagate: g.Permissions.Has(PermSpawn),
		issuedAt:     g.IssuedAt.UTC().Truncate(time.Second),
	}
	if b.version == BlessingVersion1 {
		b.cons.Quota.DiskBytes = MaxDiskBytes
	}
	b.cons.NotBefore = b.cons.NotBefore.UTC().Truncate(time.Second)
	b.cons.NotAfter = b.cons.NotAfter.UTC().Truncate(time.Second)
	if g.Parent != nil {
		b.parent = g.Parent.child
		b.depth = g.Parent.depth + 1
		if signer.Public().ID() != g.Parent.child {
			return nil, fmt.Errorf("issue blessing: signer is not the parent %s", g.Parent.child)
		}
	}
	r := g.Rand
	if r == nil {
		r = rand.Reader
	}
	b.nonce = make([]byte, NonceSize)
	if _, err := io.ReadFull(r, b.nonce); err != nil {
		return nil, fmt.Errorf("issue blessing: nonce: %w", err)
	}
	if err := b.validate(); err != nil && check {
		return nil, fmt.Errorf("issue blessing: %w", err)
	}
	if g.Parent != nil && check {
		if ce := checkAgainstParent(g.Parent, b); ce != nil {
			return nil, fmt.Errorf("issue blessing: %s: %s", ce.Reason, ce.Detail)
		}
	}
	b.seal()
	sig, err := signer.Sign(identity.PurposeBlessing, b.canonical)
	if err != nil {
		return nil, fmt.Errorf("issue blessing: %w", err)
	}
	b.sig = cloneSig(sig)
	b.seal()
	return b, nil
}

// validate checks what a blessing must satisfy on its own.
func (b *Blessing) validate() error {
	switch {
	case b.version != BlessingVersion1 && b.version != BlessingVersion2:
		return fieldErr("version", "%d is not supported (want %d or %d)", b.version, BlessingVersion1, BlessingVersion2)
	case b.depth < 1 || b.depth > MaxChainDepth:
		return fieldErr("depth", "%d is outside 1..%d", b.depth, MaxChainDepth)
	case len(b.childKey.Ed25519) != identity.Ed25519PublicKeySize:
		return fieldErr("child_keys.ed25519", "%d bytes, want %d", len(b.childKey.Ed25519), identity.Ed25519PublicKeySize)
	case len(b.childKey.MLDSA) != identity.MLDSAPublicKeySize:
		return fieldErr("child_keys.mldsa65", "%d bytes, want %d", len(b.childKey.MLDSA), identity.MLDSAPublicKeySize)
	case b.childKey.ID() != b.child:
		return fieldErr("child", "%s is not the ID of child_keys (%s)", b.child, b.childKey.ID())
	case !b.perms.valid():
		return fieldErr("permissions", "unknown permission bits %#x", uint32(b.perms))
	case b.canPropagate != b.perms.Has(PermSpawn):
		return fieldErr("can_propagate", "must be true exactly when spawn is granted")
	case b.serial < 1 || b.serial > MaxChildren:
		return fieldErr("serial", "%d is outside 1..%d", b.serial, MaxChildren)
	case len(b.nonce) != NonceSize:
		return fieldErr("nonce", "%d bytes, want %d", len(b.nonce), NonceSize)
	}
	c := b.cons
	switch {
	case c.MaxDepth < 1 || c.MaxDepth > MaxChainDepth:
		return fieldErr("constraints.max_depth", "%d is outside 1..%d", c.MaxDepth, MaxChainDepth)
	case c.MaxChildren < 0 || c.MaxChildren > MaxChildren:
		return fieldErr("constraints.max_children", "%d is outside 0..%d", c.MaxChildren, MaxChildren)
	case c.Quota.CPUMillis < 0 || c.Quota.CPUMillis > MaxCPUMillis:
		return fieldErr("constraints.quota.cpu_millis", "%d is outside 0..%d", c.Quota.CPUMillis, MaxCPUMillis)
	case c.Quota.MemoryBytes < 0 || c.Quota.MemoryBytes > MaxMemoryBytes:
		return fieldErr("constraints.quota.memory_bytes", "%d is outside 0..%d", c.Quota.MemoryBytes, int64(MaxMemoryBytes))
	case c.Quota.PIDs < 0 || c.Quota.PIDs > MaxPIDs:
		return fieldErr("constraints.quota.pids", "%d is outside 0..%d", c.Quota.PIDs, MaxPIDs)
	case c.Quota.DiskBytes < 0 || c.Quota.DiskBytes > MaxDiskBytes:
		return fieldErr("constraints.quota.disk_bytes", "%d is outside 0..%d", c.Quota.DiskBytes, int64(MaxDiskBytes))
	case !c.NotBefore.Before(c.NotAfter):
		return fieldErr("constraints.not_after", "%s is not after not_before %s", formatTime(c.NotAfter), formatTime(c.NotBefore))
	}
	return nil
}

// checkAgainstParent applies the attenuation rules between a link and the
// link that issued it. It does not check signatures or time.
func checkAgainstParent(p, b *Blessing) *ChainError {
	fail := func(r Reason, format string, args ...any) *ChainError {
		return &ChainError{Reason: r, Detail: fmt.Sprintf(format, args...)}
	}
	switch {
	case !p.perms.Has(PermSpawn):
		return fail(ReasonEscalation, "parent %s does not hold spawn and cannot bless children", p.child)
	case !b.perms.SubsetOf(p.perms):
		return fail(ReasonEscalation, "grants %s, which the parent %s does not hold", b.perms.Minus(p.perms), p.child)
	case b.depth > p.cons.MaxDepth:
		return fail(ReasonDepthExceeded, "depth %d exceeds the parent's max_depth %d", b.depth, p.cons.MaxDepth)
	case b.cons.MaxDepth > p.cons.MaxDepth:
		return fail(ReasonEscalation, "max_depth %d exceeds the parent's %d", b.cons.MaxDepth, p.cons.MaxDepth)
	case b.serial > p.cons.MaxChildren:
		return fail(ReasonChildrenExceeded, "serial %d exceeds the parent's max_children %d", b.serial, p.cons.MaxChildren)
	case b.cons.MaxChildren > p.cons.MaxChildren:
		return fail(ReasonEscalation, "max_children %d exceeds the parent's %d", b.cons.MaxChildren, p.cons.MaxChildren)
	case b.cons.Quota.exceeds(p.cons.Quota) != "":
		return fail(ReasonEscalation, "%s", b.cons.Quota.exceeds(p.cons.Quota))
	case b.cons.NotBefore.Before(p.cons.NotBefore):
		return fail(ReasonEscalation, "not_before %s is earlier than the parent's %s", formatTime(b.cons.NotBefore), formatTime(p.cons.NotBefore))
	case b.cons.NotAfter.After(p.cons.NotAfter):
		return fail(ReasonEscalation, "not_after %s is later than the parent's %s", formatTime(b.cons.NotAfter), formatTime(p.cons.NotAfter))
	}
	return nil
}

// Wire form.

// quotaJSON is a quota on the wire: disk_bytes is required from version
// 2 on and absent before.
type quotaJSON struct {
	CPUMillis   int64  `json:"cpu_millis"`
	MemoryBytes int64  `json:"memory_bytes"`
	PIDs        int64  `json:"pids"`
	DiskBytes   *int64 `json:"disk_bytes,omitempty"`
}

type constraintsJSON struct {
	MaxDepth    *int       `json:"max_depth"`
	MaxChildren *int       `json:"max_children"`
	Quota       *quotaJSON `json:"quota"`
	NotBefore   string     `json:"not_before"`
	NotAfter    string     `json:"not_after"`
}

type keysJSON struct {
	Ed25519 string `json:"ed25519"`
	MLDSA   string `json:"mldsa65"`
}

type blessingJSON struct {
	Version      int              `json:"version"`
	Network      string           `json:"network"`
	Parent       string           `json:"parent"`
	Child        string           `json:"child"`
	ChildKeys    *keysJSON        `json:"child_keys"`
	Depth        int              `json:"depth"`
	Serial       int              `json:"serial"`
	Permissions  []string         `json:"permissions"`
	Constraints  *constraintsJSON `json:"constraints"`
	CanPropagate *bool            `json:"can_propagate"`
	Nonce        string           `json:"nonce"`
	IssuedAt     string           `json:"issued_at"`
	Signature    *keysJSON        `json:"signature"`
}

// GenesisParent is the parent field of a blessing issued by the genesis root.
const GenesisParent = "genesis"

func (b *Blessing) toJSON() blessingJSON {
	parent := GenesisParent
	if !b.IsGenesis() {
		parent = b.parent.String()
	}
	md, mc, cp := b.cons.MaxDepth, b.cons.MaxChildren, b.canPropagate
	q := quotaJSON{CPUMillis: b.cons.Quota.CPUMillis, MemoryBytes: b.cons.Quota.MemoryBytes, PIDs: b.cons.Quota.PIDs}
	if b.version >= BlessingVersion2 {
		disk := b.cons.Quota.DiskBytes
		q.DiskBytes = &disk
	}
	return blessingJSON{
		Version: b.version, Network: b.network.String(), Parent: parent, Child: b.child.String(),
		ChildKeys: &keysJSON{
			Ed25519: base64.StdEncoding.EncodeToString(b.childKey.Ed25519),
			MLDSA:   base64.StdEncoding.EncodeToString(b.childKey.MLDSA),
		},
		Depth: b.depth, Serial: b.serial, Permissions: b.perms.Names(),
		Constraints: &constraintsJSON{
			MaxDepth: &md, MaxChildren: &mc, Quota: &q,
			NotBefore: formatTime(b.cons.NotBefore), NotAfter: formatTime(b.cons.NotAfter),
		},
		CanPropagate: &cp,
		Nonce:        base64.StdEncoding.EncodeToString(b.nonce),
		IssuedAt:     formatTime(b.issuedAt),
		Signature: &keysJSON{
			Ed25519: base64.StdEncoding.EncodeToString(b.sig.Ed25519),
			MLDSA:   base64.StdEncoding.EncodeToString(b.sig.MLDSA),
		},
	}
}

// MarshalJSON encodes the blessing as blessing.json.
func (b *Blessing) MarshalJSON() ([]byte, error) { return json.Marshal(b.toJSON()) }

// ParseBlessing decodes and structurally validates a blessing.json. It does
// not verify the signature; that needs the issuer's key (see Verifier).
func ParseBlessing(data []byte) (*Blessing, error) {
	var j blessingJSON
	if err := strictjson.Unmarshal(data, MaxBlessingJSON, &j); err != nil {
		return nil, fmt.Errorf("blessing: %w: %w", ErrMalformed, err)
	}
	b, err := fromJSON(&j)
	if err != nil {
		return nil, fmt.Errorf("blessing: %w", err)
	}
	return b, nil
}

func decodeB64(field, s string, want int) ([]byte, error) {
	if base64.StdEncoding.EncodedLen(want) != len(s) {
		return nil, fieldErr(field, "%d base64 characters, want %d (%d bytes)", len(s), base64.StdEncoding.EncodedLen(want), want)
	}
	v, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fieldErr(field, "not base64")
	}
	return v, nil
}

func fromJSON(j *blessingJSON) (*Blessing, error) {
	b := &Blessing{version: j.Version, depth: j.Depth, serial: j.Serial}
	var err error
	if b.network, err = identity.ParseNetworkID(j.Network); err != nil {
		return nil, fieldErr("network", "%v", err)
	}
	if j.Parent == GenesisParent {
		if j.Depth != 1 {
			return nil, fieldErr("parent", "genesis parent only at depth 1, not %d", j.Depth)
		}
	} else {
		if j.Depth == 1 {
			return nil, fieldErr("parent", "a depth-1 blessing must have parent %q", GenesisParent)
		}
		if b.parent, err = identity.ParseID(j.Parent); err != nil {
			return nil, fieldErr("parent", "%v", err)
		}
	}
	if b.child, err = identity.ParseID(j.Child); err != nil {
		return nil, fieldErr("child", "%v", err)
	}
	if j.ChildKeys == nil {
		return nil, fieldErr("child_keys", "missing")
	}
	if b.childKey.Ed25519, err = decodeB64("child_keys.ed25519", j.ChildKeys.Ed25519, identity.Ed25519PublicKeySize); err != nil {
		return nil, err
	}
	if b.childKey.MLDSA, err = decodeB64("child_keys.mldsa65", j.ChildKeys.MLDSA, identity.MLDSAPublicKeySize); err != nil {
		return nil, err
	}
	if j.Permissions == nil {
		return nil, fieldErr("permissions", "missing")
	}
	for _, n := range j.Permissions {
		p, err := ParsePermission(n)
		if err != nil {
			return nil, fieldErr("permissions", "%v", err)
		}
		if b.perms.Has(p) {
			return nil, fieldErr("permissions", "%q listed twice", n)
		}
		b.perms |= 1 << p
	}
	c := j.Constraints
	if c == nil || c.MaxDepth == nil || c.MaxChildren == nil || c.Quota == nil {
		return nil, fieldErr("constraints", "missing max_depth, max_children or quota")
	}
	q := Quota{CPUMillis: c.Quota.CPUMillis, MemoryBytes: c.Quota.MemoryBytes, PIDs: c.Quota.PIDs}
	switch {
	case j.Version == BlessingVersion1 && c.Quota.DiskBytes != nil:
		return nil, fieldErr("constraints.quota.disk_bytes", "not part of a version 1 blessing")
	case j.Version == BlessingVersion1:
		q.DiskBytes = MaxDiskBytes // no disk dimension: limits nothing in it
	case c.Quota.DiskBytes == nil:
		return nil, fieldErr("constraints.quota.disk_bytes", "missing")
	default:
		q.DiskBytes = *c.Quota.DiskBytes
	}
	b.cons = Constraints{MaxDepth: *c.MaxDepth, MaxChildren: *c.MaxChildren, Quota: q}
	if b.cons.NotBefore, err = parseTime("constraints.not_before", c.NotBefore); err != nil {
		return nil, err
	}
	if b.cons.NotAfter, err = parseTime("constraints.not_after", c.NotAfter); err != nil {
		return nil, err
	}
	if j.CanPropagate == nil {
		return nil, fieldErr("can_propagate", "missing")
	}
	b.canPropagate = *j.CanPropagate
	if b.nonce, err = decodeB64("nonce", j.Nonce, NonceSize); err != nil {
		return nil, err
	}
	if b.issuedAt, err = parseTime("issued_at", j.IssuedAt); err != nil {
		return nil, err
	}
	if j.Signature == nil {
		return nil, fieldErr("signature", "missing")
	}
	b.sig = &identity.Signature{}
	if b.sig.Ed25519, err = decodeB64("signature.ed25519", j.Signature.Ed25519, identity.Ed25519SignatureSize); err != nil {
		return nil, err
	}
	if b.sig.MLDSA, err = decodeB64("signature.mldsa65", j.Signature.MLDSA, identity.MLDSASignatureSize); err != nil {
		return nil, err
	}
	if err := b.validate(); err != nil {
		return nil, err
	}
	b.seal()
	return b, nil
}

// cloneSig copies a signature so no caller keeps an alias into an
// immutable blessing.
func cloneSig(s *identity.Signature) *identity.Signature {
	return &identity.Signature{Ed25519: append([]byte(nil), s.Ed25519...), MLDSA: append([]byte(nil), s.MLDSA...)}
}
