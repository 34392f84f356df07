package cli

import (
	"os/exec"
	"testing"
	"time"
)

func TestWaitExits(t *testing.T) {
	var cmds []*exec.Cmd
	var pids []int
	for range 3 {
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
		pids = append(pids, c.Process.Pid)
	}
	t.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	fds, err := openPidfds(pids)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFDs(fds)
	if alive := waitExits(fds, 50*time.Millisecond); alive != 3 {
		t.Fatalf("%d running after the timeout, want 3", alive)
	}
	_ = cmds[0].Process.Kill()
	_ = cmds[1].Process.Kill()
	if alive := waitExits(fds[:2], time.Minute); alive != 0 {
		t.Fatalf("%d of the two killed still running, want 0", alive)
	}
	if alive := waitExits(fds[2:], 50*time.Millisecond); alive != 1 {
		t.Fatalf("the one not killed: %d running, want 1", alive)
	}
	_ = cmds[2].Process.Kill()
	if alive := waitExits(fds, time.Minute); alive != 0 {
		t.Fatalf("%d running after all were killed, want 0", alive)
	}
}

func TestOpenPidfdsOfAMissingProcess(t *testing.T) {
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := openPidfds([]int{c.Process.Pid}); err == nil {
		t.Fatal("a pidfd of a reaped process, want an error")
	}
}
