package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat. The kernel
// reports them in USER_HZ ticks, which is 100 on every Linux architecture
// Go runs on (it is part of the ABI, independent of the kernel's CONFIG_HZ;
// sysconf(_SC_CLK_TCK) returns it), so a tick is 10 ms and that is the
// resolution of every figure here.
const userHZ = 100

const tick = time.Second / userHZ

// procStat is what we read from /proc/<pid>/stat.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64 // ticks
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(pid, b)
}

// parseStat parses a stat line. The command name (field 2) is in
// parentheses and may itself hold spaces and ')', so the fields are counted
// from the last ')'.
func parseStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	// f[0] is field 3 (state): field n is f[n-3].
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 15", pid, len(f))
	}
	var s procStat
	var err error
	if s.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	for k, dst := range []*int64{&s.utime, &s.stime, &s.cutime, &s.cstime} {
		if *dst, err = strconv.ParseInt(f[11+k], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("/proc/%d/stat: field %d: %w", pid, 14+k, err)
		}
	}
	return s, nil
}

// ProcCPU is the CPU time (user + system) a process has used so far, all
// its threads included, not counting its children.
func ProcCPU(pid int) (time.Duration, error) {
	s, err := readStat(pid)
	if err != nil {
		return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
	}
	return time.Duration(s.utime+s.stime) * tick, nil
}

// ProcRSS is a process's resident set size in bytes (VmRSS of
// /proc/<pid>/status, which the kernel reports in KiB).
func ProcRSS(pid int) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("rss of process %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("rss of process %d: parsing %q: %w", pid, v, err)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("rss of process %d: %w", pid, err)
	}
	// Kernel threads and zombies have no VmRSS line.
	return 0, fmt.Errorf("rss of process %d: no VmRSS in /proc/%d/status", pid, pid)
}

// TreeCPU is the CPU time used by root and all its descendants: for every
// process of the tree, its own utime+stime plus cutime+cstime, the times of
// children it has already reaped.
//
// Both halves matter for PostgreSQL. Client backends are children of the
// postmaster and live as long as their connection, so the live tree holds
// them; but a parallel query runs in parallel workers, which the postmaster
// forks per query and reaps when they exit, so their CPU survives only in
// the postmaster's cutime/cstime. A child that has exited but is not yet
// reaped (a zombie) still shows its own times. So the sum counts every
// process that ever ran under root once, and differences of two samples are
// the tree's CPU in between — except that a child reaped while the tree is
// being read can be missed or counted twice in that one sample (reading
// takes about a millisecond).
//
// Descendants are found by walking the ppid of every /proc/<pid>/stat.
func TreeCPU(root int) (time.Duration, error) {
	rootStat, err := readStat(root)
	if err != nil {
		return 0, fmt.Errorf("cpu time of process tree %d: %w", root, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("cpu time of process tree %d: %w", root, err)
	}
	stats := map[int]procStat{root: rootStat}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue // not a process directory
		}
		s, err := readStat(pid)
		if err != nil {
			// A process that exited since the listing: its directory is gone
			// (ENOENT), or reading its stat fails with ESRCH.
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				continue
			}
			return 0, fmt.Errorf("cpu time of process tree %d: %w", root, err)
		}
		stats[pid] = s
		children[s.ppid] = append(children[s.ppid], pid)
	}
	var ticks int64
	for queue := []int{root}; len(queue) > 0; queue = queue[1:] {
		s := stats[queue[0]]
		ticks += s.utime + s.stime + s.cutime + s.cstime
		queue = append(queue, children[queue[0]]...)
	}
	return time.Duration(ticks) * tick, nil
}

// ThreadCPU is the CPU time (user + system) one thread of a process has
// used so far: /proc/<pid>/task/<tid>/stat has the process's stat fields
// for that thread alone.
func ThreadCPU(pid, tid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(tid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("cpu time of thread %d of process %d: %w", tid, pid, err)
	}
	s, err := parseStat(tid, b)
	if err != nil {
		return 0, fmt.Errorf("cpu time of thread %d of process %d: %w", tid, pid, err)
	}
	return time.Duration(s.utime+s.stime) * tick, nil
}
