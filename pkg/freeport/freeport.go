// Package freeport picks loopback TCP ports for servers that a caller starts as child
// processes, which bind the port themselves some time after it was picked.
//
// A port the kernel hands out for "127.0.0.1:0" comes from the ephemeral range, the same range
// every outgoing connection's local port comes from: between the pick and the child's bind,
// any client on the machine (a Kafka or Redis connection) may take it, and the child fails
// with "address already in use". Port picks below the ephemeral range instead, where only
// another listener can take it.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the bottom of the range Port picks from: above the registered services most
// machines run, below Linux's default ephemeral range (32768–60999).
const lowest = 20000

// Port returns a loopback TCP port that was free a moment ago and is outside the ephemeral
// range. Where that range starts too low to leave room, or the tries find no free port, it
// falls back to a kernel pick.
func Port() (int, error) { return pickIn(lowest, ephemeralStart()) }

// pickIn tries random ports of [lo, hi) and falls back to a kernel pick when the range is too
// small or every try is in use.
func pickIn(lo, hi int) (int, error) {
	if hi > lo {
		for range 100 {
			port := lo + rand.IntN(hi-lo)
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				_ = l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("picking a loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is Port as a "127.0.0.1:port" address.
func Addr() (string, error) {
	port, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// ephemeralStart is the first port of the kernel's ephemeral range (Linux's
// ip_local_port_range), or Linux's default where it cannot be read.
func ephemeralStart() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return linuxDefault
	}
	start, err := strconv.Atoi(fields[0])
	if err != nil || start <= 0 {
		return linuxDefault
	}
	return start
}
