package bench

import (
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestThreadCPU reads two threads of this process, one spinning and one
// asleep: each gets its own CPU time, not the process's.
func TestThreadCPU(t *testing.T) {
	type thread struct {
		tid  int
		stop chan struct{}
		done chan struct{}
	}
	start := func(busy bool) thread {
		th := thread{stop: make(chan struct{}), done: make(chan struct{})}
		ready := make(chan int)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			defer close(th.done)
			ready <- syscall.Gettid()
			for {
				select {
				case <-th.stop:
					return
				default:
				}
				if !busy {
					<-th.stop
					return
				}
			}
		}()
		th.tid = <-ready
		return th
	}
	busy, idle := start(true), start(false)
	pid := os.Getpid()
	b0, err := ThreadCPU(pid, busy.tid)
	if err != nil {
		t.Fatal(err)
	}
	i0, err := ThreadCPU(pid, idle.tid)
	if err != nil {
		t.Fatal(err)
	}
	// However loaded the machine, the spinning thread reaches 200 ms of
	// CPU; the sleeping one meanwhile uses nothing measurable.
	var b1, i1 time.Duration
	for deadline := time.Now().Add(20 * time.Second); b1-b0 < 200*time.Millisecond && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if b1, err = ThreadCPU(pid, busy.tid); err != nil {
			t.Fatal(err)
		}
	}
	if i1, err = ThreadCPU(pid, idle.tid); err != nil {
		t.Fatal(err)
	}
	for _, th := range []thread{busy, idle} {
		close(th.stop)
		<-th.done
	}
	t.Logf("spinning thread %v → %v, sleeping thread %v → %v", b0, b1, i0, i1)
	if b1-b0 < 200*time.Millisecond {
		t.Errorf("spinning thread used %v in 20 s", b1-b0)
	}
	if i1-i0 > 20*time.Millisecond {
		t.Errorf("sleeping thread used %v while the other spun for %v", i1-i0, b1-b0)
	}
	if _, err := ThreadCPU(pid, 1<<30); err == nil {
		t.Error("a thread that does not exist was read")
	}
}

func TestParseTaskStat(t *testing.T) {
	// A thread of mariadbd serving a connection, as /proc/PID/task/TID/stat
	// has it: the thread's own name and times.
	line := "81234 (one_connection) S 1 81200 81200 0 -1 4194368 3000 0 0 0 250 40 0 0 20 0 57 0 99 0 0\n"
	s, err := parseStat(81234, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if s.utime != 250 || s.stime != 40 || time.Duration(s.utime+s.stime)*tick != 2900*time.Millisecond {
		t.Errorf("parsed %+v", s)
	}
}
