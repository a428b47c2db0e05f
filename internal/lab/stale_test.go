package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRemoveStale plays a run that died before its cleanup: a namespace
// named for a dead process, with a process still inside. RemoveStale (run
// by every Start) must kill the process and delete the namespace, and must
// leave alone the namespaces of live processes.
func TestRemoveStale(t *testing.T) {
	SkipIfUnavailable(t)
	counted(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	dead := deadPID(t)
	stale := fmt.Sprintf("%s%d-%s-client", nsPrefix, dead, randomHex(3))
	live := fmt.Sprintf("%s%d-%s-router", nsPrefix, os.Getpid(), randomHex(3))
	for _, ns := range []string{stale, live} {
		if err := run(ctx, "ip", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteNetns(context.Background(), ns) })
	}
	sleeper := exec.Command("ip", "netns", "exec", stale, "sleep", "60")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	t.Cleanup(func() { sleeper.Process.Kill() })
	// ip netns exec joins the namespace after it starts: until then the
	// namespace holds no process, and RemoveStale would delete it under a
	// sleeper that joins it afterwards.
	for {
		if out, _ := runOut(ctx, "ip", "netns", "pids", stale); strings.TrimSpace(out) != "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the sleeper never joined the stale namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := RemoveStale(ctx, t.Logf); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(netnsDir + "/" + stale); !os.IsNotExist(err) {
		t.Errorf("stale namespace %s still there (%v)", stale, err)
	}
	if _, err := os.Stat(netnsDir + "/" + live); err != nil {
		t.Errorf("namespace %s of a live process was removed: %v", live, err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the process in the stale namespace was not killed")
	}
}

// deadPID returns the id of a process that has exited.
func deadPID(t *testing.T) int {
	for i := 0; i < 10; i++ {
		cmd := exec.Command("true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		if pid := cmd.Process.Pid; !pidAlive(pid) {
			return pid
		}
	}
	t.Fatal("no dead process id found")
	return 0
}
