package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	start := ephemeralStart()
	for range 20 {
		port, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if start > lowest && (port < lowest || port >= start) {
			t.Fatalf("port %d outside [%d, %d)", port, lowest, start)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d was picked but cannot be bound: %v", port, err)
		}
		_ = l.Close()
	}
}

func TestAPortInUseIsNeverPicked(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := l.Addr().(*net.TCPAddr).Port
	// A range of one port, held: every try fails, and the kernel's pick is another port.
	port, err := pickIn(held, held+1)
	if err != nil {
		t.Fatal(err)
	}
	if port == held {
		t.Fatalf("pickIn returned %d, which a listener holds", held)
	}
}

func TestAddrIsLoopback(t *testing.T) {
	addr, err := Addr()
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want a 127.0.0.1 address", addr)
	}
}
