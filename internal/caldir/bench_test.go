package caldir

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDial is the per-connection cost of the checks: a checked dial
// (through the opened host directory, SO_PEERCRED compared) against a
// plain dial of the same socket's path.
func BenchmarkDial(b *testing.B) {
	data := b.TempDir()
	l := New(data)
	if err := l.Prepare(); err != nil {
		b.Fatal(err)
	}
	socks, err := l.Host("cal").Bind("gateway.sock")
	if err != nil {
		b.Fatal(err)
	}
	ln, err := Listen(socks["gateway.sock"])
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	path := filepath.Join(data, "host", "cal", "gateway.sock")
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			c, err := net.Dial("unix", path)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	sock := l.Host("cal").Socket("gateway.sock", os.Geteuid())
	b.Run("checked", func(b *testing.B) {
		for b.Loop() {
			c, err := sock.Dial(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
}
