package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
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

// ReadProcSet sums ReadProcStats over pids; a process that is gone counts
// as nothing and is reported in gone (a gateway process restarted during
// a run).
func ReadProcSet(pids []int) (sum ProcStats, gone int) {
	for _, pid := range pids {
		s, err := ReadProcStats(pid)
		if err != nil {
			gone++
			continue
		}
		sum.RSSKiB += s.RSSKiB
		sum.CPUTicks += s.CPUTicks
	}
	return sum, gone
}

// MemInfo is what the idle workload reads of /proc/meminfo.
type MemInfo struct {
	SlabKiB         int64 // Slab: the kernel's object caches (sockets, TCP state)
	MemAvailableKiB int64 // MemAvailable
}

// ReadMemInfo reads /proc/meminfo.
func ReadMemInfo() (MemInfo, error) {
	var m MemInfo
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return m, fmt.Errorf("load: read /proc/meminfo: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Slab:":
			m.SlabKiB = v
		case "MemAvailable:":
			m.MemAvailableKiB = v
		}
	}
	return m, nil
}

// BoxCPU is one sample of the machine's CPU time from /proc/stat, in
// clock ticks over all cores.
type BoxCPU struct {
	Busy, Total int64
	Cores       int
}

// ReadBoxCPU reads the first line of /proc/stat.
func ReadBoxCPU() (BoxCPU, error) {
	var c BoxCPU
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c, fmt.Errorf("load: read /proc/stat: %w", err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if i > 0 {
			c.Cores++
			continue
		}
		for j, s := range f[1:] {
			v, _ := strconv.ParseInt(s, 10, 64)
			c.Total += v
			if j != 3 && j != 4 { // idle, iowait
				c.Busy += v
			}
		}
	}
	return c, nil
}

// FindListenerPIDs returns every process with a TCP socket listening on
// addr (several with SO_REUSEPORT: gateway.processes), by the sockets'
// inodes in /proc/net/tcp and the descriptors in /proc/*/fd, sorted.
func FindListenerPIDs(addr string) ([]int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("load: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("load: port %q: %w", portStr, err)
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return nil, fmt.Errorf("load: %q is not an IPv4 address", host)
	}
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], port)
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, fmt.Errorf("load: read /proc/net/tcp: %w", err)
	}
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1] == want && f[3] == "0A" {
			inodes["socket:["+f[9]+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return nil, fmt.Errorf("%w: %s", errNoListener, addr)
	}
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, d := range dirs {
		fds, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(d, fd.Name())); err == nil && inodes[l] {
				pid, _ := strconv.Atoi(strings.Split(d, "/")[2])
				pids = append(pids, pid)
				break
			}
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("%w: %s (no process holds its sockets)", errNoListener, addr)
	}
	slices.Sort(pids)
	return pids, nil
}
