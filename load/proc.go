package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcStats is one sample of a process's memory and CPU from /proc.
type ProcStats struct {
	RSSKiB   int64 // VmRSS
	CPUTicks int64 // utime + stime, in clock ticks (1/100 s here)
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// ReadProcStats reads /proc/<pid>/status and /proc/<pid>/stat.
func ReadProcStats(pid int) (ProcStats, error) {
	var s ProcStats
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("load: read status of pid %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				s.RSSKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("load: read stat of pid %d: %w", pid, err)
	}
	// Fields after the command name (which may hold spaces) start at ")".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("load: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("load: short /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPUTicks = ut + st
	return s, nil
}

// errNoListener is returned when no process listens on the address.
var errNoListener = errors.New("load: no process found listening on the address")

// FindListenerPID returns the process that has a TCP socket listening on
// addr (ip:port), by matching the socket's inode in /proc/net/tcp against
// the descriptors in /proc/*/fd (only processes this user may inspect).
func FindListenerPID(addr string) (int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("load: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return 0, fmt.Errorf("load: port %q: %w", portStr, err)
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return 0, fmt.Errorf("load: %q is not an IPv4 address", host)
	}
	// /proc/net/tcp prints the address as little-endian hex.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], port)
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, fmt.Errorf("load: read /proc/net/tcp: %w", err)
	}
	inode := ""
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1] == want && f[3] == "0A" {
			inode = f[9]
			break
		}
	}
	if inode == "" {
		return 0, fmt.Errorf("%w: %s", errNoListener, addr)
	}
	target := "socket:[" + inode + "]"
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, d := range dirs {
		fds, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(d, fd.Name())); err == nil && l == target {
				pid, _ := strconv.Atoi(strings.Split(d, "/")[2])
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: %s (socket inode %s)", errNoListener, addr, inode)
}
