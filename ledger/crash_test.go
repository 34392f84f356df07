package ledger

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashWriterEnv = "CALNET_LEDGER_CRASH_WRITER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashWriterEnv); dir != "" {
		crashWriter(dir)
		return
	}
	os.Exit(m.Run())
}

// crashWriter appends from several goroutines until it is killed.
func crashWriter(dir string) {
	// Compact often, so kills also land inside compactions.
	compactAfter = 3
	k := testKey(nil)
	l, err := Open(Config{Dir: dir, Origin: testOrigin, LogKey: k.Public(), Signer: k})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	var once sync.Once
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				batch := []Entry{testEntry(w*1_000_000 + i)}
				if i%3 == 0 {
					batch = append(batch, testEntry(i), testEntry(i+1))
				}
				if _, err := l.Append(context.Background(), batch...); err != nil {
					os.Exit(4)
				}
				once.Do(func() {
					if _, err := os.Stdout.WriteString("ready\n"); err != nil {
						os.Exit(5) // the test reads "ready": without it, nothing to kill
					}
				})
			}
		})
	}
	wg.Wait()
}

// TestCrashSafetyKillsRealWriter SIGKILLs a writer process at random points
// of its appends, many times over, and checks that every reopen is
// consistent with the last checkpoint and with all earlier ones.
func TestCrashSafetyKillsRealWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills writer processes")
	}
	dir := t.TempDir()
	var prevSize uint64
	var prevRoot []byte
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 12 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashWriterEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			werr := cmd.Wait()
			t.Fatalf("round %d: writer did not start (%v): %q %s", round, werr, line, stderr.String())
		}
		time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
		must(t, cmd.Process.Signal(syscall.SIGKILL))
		werr := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: the writer ended before it was killed: %v %s", round, werr, stderr.String())
		}

		l := openLog(t, dir, true)
		cp := l.Checkpoint()
		if st, err := os.Stat(dir + "/" + checkpointsFile); err != nil || st.Size() > int64(compactAfter+1)*(cpRecordHeader+MaxCheckpointSize) {
			t.Fatalf("round %d: checkpoints file not compacted: %v %v", round, st.Size(), err)
		}
		if cp.Size < prevSize {
			t.Fatalf("round %d: checkpoint went back from %d to %d", round, prevSize, cp.Size)
		}
		if _, err := l.Audit(context.Background()); err != nil {
			t.Fatalf("round %d: audit after kill: %v", round, err)
		}
		p, err := l.Consistency(prevSize, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Verify(prevRootOrEmpty(prevRoot), cp.Root); err != nil {
			t.Fatalf("round %d: new checkpoint is not an extension of the previous one: %v", round, err)
		}
		t.Logf("round %d: %d entries after SIGKILL", round, cp.Size)
		prevSize, prevRoot = cp.Size, cp.Root
		must(t, l.Close())
	}
	if prevSize == 0 {
		t.Fatal("the writer never committed anything")
	}
}

func prevRootOrEmpty(r []byte) []byte {
	if r == nil {
		return hasher.EmptyRoot()
	}
	return r
}
