// Package netlab runs several hosts on one machine for tests: each node is
// a network namespace with its own address, joined to the others by a veth
// pair on a bridge of the lab's own, and processes run inside a node as
// they would on a host of their own. A lab injects the faults of a real
// network: a node's link cut (Isolate), a partition between groups of
// nodes (Partition), packet loss and delay (Loss, Delay), each undone by
// Heal.
//
// Everything a lab makes on the host carries its unique name (prefix
// "cnl", six hex digits), and its owner's PID is recorded under StateDir:
// Close removes it all, and New first removes what labs of dead processes
// left (a test that was killed). It needs root and the iproute2 tools (ip,
// tc); Loss without the kernel's netem uses nftables (nft). Skip reports
// what is missing in a sentence, for a test to skip with.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StateDir records each live lab's owner (one file per lab, holding the
// owner's PID), so that New can tell a leftover from a lab in use.
const StateDir = "/run/calnet-netlab"

// prefix starts the name of everything a lab makes on the host.
const prefix = "cnl"

// Limits of a lab.
const (
	// MaxNodes is the most nodes one lab holds (one /24, and names that
	// fit the kernel's 15-byte interface names).
	MaxNodes = 200
)

// ErrUnsupported wraps a fault this host's kernel or tools cannot inject.
var ErrUnsupported = errors.New("not supported on this host")

// Lab is a set of nodes on one bridge. Its methods are safe for concurrent
// use.
type Lab struct {
	id     string // six hex digits
	bridge string
	subnet netip.Prefix
	host   netip.Addr // the bridge's own address: the machine itself
	nodes  []*Node

	mu     sync.Mutex
	closed bool
}

// Node is one host of the lab: a network namespace whose interface eth0
// has Addr.
type Node struct {
	// Name is the node's network namespace (ip netns), unique on the
	// machine.
	Name string
	// Addr is the node's address on the lab's network.
	Addr netip.Addr
	// Index is the node's position in the lab, from 0.
	Index int
	lab   *Lab
	veth  string // the host end of its veth pair, a port of the bridge
}

// Skip returns why a lab cannot run here (not root, a tool missing), or
// "" when it can.
func Skip() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("%s (iproute2) is not installed", tool)
		}
	}
	return ""
}

// New makes a lab of n nodes, after removing what earlier labs of dead
// processes left. ctx bounds the setup only.
func New(ctx context.Context, n int) (*Lab, error) {
	if why := Skip(); why != "" {
		return nil, fmt.Errorf("netlab: %s", why)
	}
	if n < 1 || n > MaxNodes {
		return nil, fmt.Errorf("netlab: %d nodes, want 1 to %d", n, MaxNodes)
	}
	if err := Sweep(ctx); err != nil {
		return nil, err
	}
	raw := make([]byte, 3)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	l := &Lab{id: hex.EncodeToString(raw)}
	l.bridge = prefix + l.id + "br"
	var err error
	if l.subnet, err = freeSubnet(ctx, raw); err != nil {
		return nil, err
	}
	l.host = l.subnet.Addr().Next()
	if err := os.MkdirAll(StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	if err := os.WriteFile(filepath.Join(StateDir, l.id), []byte(owner(os.Getpid())+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	if err := l.setup(ctx, n); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// setup makes the bridge and the nodes.
func (l *Lab) setup(ctx context.Context, n int) error {
	hostCIDR := netip.PrefixFrom(l.host, l.subnet.Bits()).String()
	steps := [][]string{
		{"ip", "link", "add", l.bridge, "type", "bridge"},
		{"ip", "addr", "add", hostCIDR, "dev", l.bridge},
		{"ip", "link", "set", l.bridge, "up"},
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return err
		}
	}
	addr := l.host
	for i := range n {
		addr = addr.Next()
		node := &Node{Name: fmt.Sprintf("%s-%s-%d", prefix, l.id, i), Addr: addr, Index: i, lab: l, veth: fmt.Sprintf("%s%sh%d", prefix, l.id, i)}
		peer := fmt.Sprintf("%s%sn%d", prefix, l.id, i)
		cidr := netip.PrefixFrom(addr, l.subnet.Bits()).String()
		steps := [][]string{
			{"ip", "netns", "add", node.Name},
			{"ip", "link", "add", node.veth, "type", "veth", "peer", "name", peer},
			{"ip", "link", "set", peer, "netns", node.Name},
			{"ip", "link", "set", node.veth, "master", l.bridge},
			{"ip", "link", "set", node.veth, "up"},
			{"ip", "-n", node.Name, "link", "set", peer, "name", "eth0"},
			{"ip", "-n", node.Name, "addr", "add", cidr, "dev", "eth0"},
			{"ip", "-n", node.Name, "link", "set", "eth0", "up"},
			{"ip", "-n", node.Name, "link", "set", "lo", "up"},
			{"ip", "-n", node.Name, "route", "add", "default", "via", l.host.String()},
		}
		l.nodes = append(l.nodes, node)
		for _, s := range steps {
			if err := run(ctx, s...); err != nil {
				return err
			}
		}
	}
	return nil
}

// freeSubnet picks a /24 in 10.213.0.0/16 that no route of the machine
// covers, starting from seed.
func freeSubnet(ctx context.Context, seed []byte) (netip.Prefix, error) {
	out, err := output(ctx, "ip", "-4", "route", "show")
	if err != nil {
		return netip.Prefix{}, err
	}
	start := int(seed[0])
	for k := range 256 {
		third := (start + k) % 256
		p := netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", third))
		if !bytes.Contains(out, []byte(p.String())) && !bytes.Contains(out, []byte(fmt.Sprintf("10.213.%d.", third))) {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("netlab: no free /24 in 10.213.0.0/16")
}

// ForTest makes a lab of n nodes for t, skipping t with the reason when
// this machine cannot run one, and closes it when t ends (Sweep removes
// it at the next New if the test process is killed first).
func ForTest(t testing.TB, n int) *Lab {
	t.Helper()
	if why := Skip(); why != "" {
		t.Skip("netlab: " + why)
	}
	l, err := New(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab: close: %v", err)
		}
	})
	return l
}

// ID is the lab's unique name.
func (l *Lab) ID() string { return l.id }

// Nodes are the lab's nodes, in order.
func (l *Lab) Nodes() []*Node { return slices.Clone(l.nodes) }

// HostAddr is the machine's own address on the lab's network (the
// bridge's): processes outside every node reach the nodes from it, and
// nodes reach the machine at it.
func (l *Lab) HostAddr() netip.Addr { return l.host }

// Command is a command that runs inside the node's network namespace (its
// own interfaces, addresses and routes; the machine's files and
// processes). Close kills whatever still runs in the node.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// PIDs lists the processes that run in the node's namespace.
func (n *Node) PIDs(ctx context.Context) ([]int, error) {
	out, err := output(ctx, "ip", "netns", "pids", n.Name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Isolate cuts the node's link: nothing reaches it or leaves it, as when
// its cable is pulled. Heal restores it.
func (l *Lab) Isolate(ctx context.Context, n *Node) error {
	return run(ctx, "ip", "link", "set", n.veth, "down")
}

// Partition splits the lab: a node of one group reaches no node of
// another (packets between them are dropped, routes say nothing), and
// nodes in no group keep reaching everyone. Heal ends it.
func (l *Lab) Partition(ctx context.Context, groups ...[]*Node) error {
	for gi, g := range groups {
		for _, a := range g {
			for gj, h := range groups {
				if gi == gj {
					continue
				}
				for _, b := range h {
					if err := run(ctx, "ip", "-n", a.Name, "route", "add", "blackhole", b.Addr.String()+"/32"); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// Delay delays every packet the node sends by d (with jitter, uniformly
// distributed) through the kernel's netem queueing discipline. A kernel
// without netem: an error wrapping ErrUnsupported.
func (l *Lab) Delay(ctx context.Context, n *Node, d, jitter time.Duration) error {
	args := []string{"ip", "netns", "exec", n.Name, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", usec(d)}
	if jitter > 0 {
		args = append(args, usec(jitter))
	}
	return netemErr(run(ctx, args...))
}

// Loss drops the share (0 to 1) of the packets the node sends, at random:
// with netem when the kernel has it, else with an nftables rule in the
// node. Neither: an error wrapping ErrUnsupported.
func (l *Lab) Loss(ctx context.Context, n *Node, share float64) error {
	if share < 0 || share > 1 {
		return fmt.Errorf("netlab: loss %v, want 0 to 1", share)
	}
	pct := strconv.FormatFloat(share*100, 'f', -1, 64) + "%"
	err := netemErr(run(ctx, "ip", "netns", "exec", n.Name, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "loss", pct))
	if err == nil || !errors.Is(err, ErrUnsupported) {
		return err
	}
	if _, lerr := exec.LookPath("nft"); lerr != nil {
		return fmt.Errorf("%w; and nft (nftables) is not installed", err)
	}
	// numgen random mod 1000 < share*1000: the share in thousandths.
	match := ""
	switch k := int(share*1000 + 0.5); {
	case k <= 0:
		return run(ctx, "ip", "netns", "exec", n.Name, "nft", "delete", "table", "inet", "netlab")
	case k < 1000:
		match = fmt.Sprintf("numgen random mod 1000 < %d ", k)
	}
	rules := fmt.Sprintf("table inet netlab {\n chain out {\n  type filter hook output priority 0; policy accept;\n  oifname \"eth0\" %sdrop\n }\n}\n", match)
	// Replace an earlier loss rule: the table is deleted (absent: fine)
	// and made again.
	_ = run(ctx, "ip", "netns", "exec", n.Name, "nft", "delete", "table", "inet", "netlab")
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: nft: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// Heal undoes every fault: links up, partitions, delay and loss gone.
func (l *Lab) Heal(ctx context.Context) error {
	var errs []error
	for _, n := range l.nodes {
		errs = append(errs, run(ctx, "ip", "link", "set", n.veth, "up"))
		// Blackhole routes (Partition).
		out, err := output(ctx, "ip", "-n", n.Name, "route", "show", "type", "blackhole")
		errs = append(errs, err)
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "blackhole" {
				errs = append(errs, run(ctx, "ip", "-n", n.Name, "route", "del", "blackhole", f[1]))
			}
		}
		// netem, if any (deleting the default root qdisc fails: ignored).
		_ = run(ctx, "ip", "netns", "exec", n.Name, "tc", "qdisc", "del", "dev", "eth0", "root")
		if _, err := exec.LookPath("nft"); err == nil {
			_ = run(ctx, "ip", "netns", "exec", n.Name, "nft", "delete", "table", "inet", "netlab")
		}
	}
	return errors.Join(errs...)
}

// Close kills every process left in the lab's nodes and removes the
// nodes, the links and the bridge. It may be called more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := remove(ctx, l.id)
	if rerr := os.Remove(filepath.Join(StateDir, l.id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// Sweep removes what labs of processes that no longer run left on the
// machine: their processes, namespaces, links and bridges, and their
// state files. A lab whose owner runs is left alone.
func Sweep(ctx context.Context) error {
	live := map[string]bool{} // labs whose owner runs
	ids := map[string]bool{}  // leftovers
	if ents, err := os.ReadDir(StateDir); err == nil {
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(StateDir, e.Name()))
			if err == nil && ownerRuns(strings.TrimSpace(string(b))) {
				live[e.Name()] = true
			} else {
				ids[e.Name()] = true
			}
		}
	}
	// Namespaces and links of labs with no state file (their owner died
	// before writing it, or /run was emptied) are leftovers too.
	out, err := output(ctx, "ip", "netns", "list")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if id, ok := labOf(f[0]); ok && !live[id] {
			ids[id] = true
		}
	}
	if out, err = output(ctx, "ip", "-o", "link", "show"); err != nil {
		return err
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, prefix) && len(name) > len(prefix)+6 {
			if id := name[len(prefix) : len(prefix)+6]; isHex(id) && !live[id] {
				ids[id] = true
			}
		}
	}
	var errs []error
	for id := range ids {
		errs = append(errs, remove(ctx, id))
		if err := os.Remove(filepath.Join(StateDir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// owner is what a state file records of the lab's owner: its PID and its
// start time (so that a PID reused by another process is not taken for
// the owner).
func owner(pid int) string {
	start, err := startTime(pid)
	if err != nil {
		return strconv.Itoa(pid)
	}
	return strconv.Itoa(pid) + " " + start
}

// ownerRuns reports whether the process a state file names still runs.
func ownerRuns(rec string) bool {
	f := strings.Fields(rec)
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false
	}
	start, err := startTime(pid)
	return err == nil && start == f[1]
}

// startTime is field 22 of /proc/<pid>/stat: clock ticks after boot.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", errors.New("short stat")
	}
	return f[19], nil
}

// labOf returns the lab ID of a namespace name cnl-<id>-<i>.
func labOf(ns string) (string, bool) {
	f := strings.Split(ns, "-")
	if len(f) != 3 || f[0] != prefix || len(f[1]) != 6 || !isHex(f[1]) {
		return "", false
	}
	return f[1], true
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// remove kills the processes of lab id's namespaces and deletes the
// namespaces, its links and its bridge.
func remove(ctx context.Context, id string) error {
	var errs []error
	out, err := output(ctx, "ip", "netns", "list")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lid, ok := labOf(f[0]); !ok || lid != id {
			continue
		}
		n := &Node{Name: f[0]}
		// Kill until none is left: a process may fork meanwhile.
		for range 50 {
			pids, err := n.PIDs(ctx)
			if err != nil || len(pids) == 0 {
				break
			}
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL) // ESRCH: gone meanwhile
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := run(ctx, "ip", "netns", "del", f[0]); err != nil {
			errs = append(errs, err)
		}
	}
	// The host ends of the veth pairs (deleting one deletes its peer),
	// then the bridge.
	if out, err = output(ctx, "ip", "-o", "link", "show"); err != nil {
		return errors.Join(append(errs, err)...)
	}
	var bridge []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if !strings.HasPrefix(name, prefix+id) {
			continue
		}
		if name == prefix+id+"br" {
			bridge = append(bridge, name)
			continue
		}
		if err := run(ctx, "ip", "link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	for _, b := range bridge {
		errs = append(errs, run(ctx, "ip", "link", "del", b))
	}
	return errors.Join(errs...)
}

// netemErr turns tc's answer for a kernel without netem into ErrUnsupported.
func netemErr(err error) error {
	if err != nil && strings.Contains(err.Error(), "qdisc kind is unknown") {
		return fmt.Errorf("netlab: the kernel has no netem queueing discipline (CONFIG_NET_SCH_NETEM): %w", ErrUnsupported)
	}
	return err
}

func usec(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) + "us" }

// run runs a command and returns its output in the error when it fails.
func run(ctx context.Context, args ...string) error {
	_, err := output(ctx, args...)
	return err
}

func output(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("netlab: %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}
