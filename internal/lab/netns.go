package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/var/run/netns"

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// runOut runs a command with a bounded time and returns its combined output.
func runOut(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Stdin = nil
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func run(ctx context.Context, name string, args ...string) error {
	_, err := runOut(ctx, name, args...)
	return err
}

// ipns runs `ip -n ns args...`.
func ipns(ctx context.Context, ns string, args ...string) error {
	return run(ctx, "ip", append([]string{"-n", ns}, args...)...)
}

// nsexec runs a command inside ns.
func nsexec(ctx context.Context, ns, name string, args ...string) (string, error) {
	return runOut(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

func (l *Lab) addNetns(ctx context.Context, name string) error {
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		if strings.Contains(err.Error(), "Operation not permitted") || strings.Contains(err.Error(), "Permission denied") {
			return fmt.Errorf("%w: %v", errNoNetns, err)
		}
		return err
	}
	l.mu.Lock()
	l.created = append(l.created, name)
	l.mu.Unlock()
	return ipns(ctx, name, "link", "set", "lo", "up")
}

// deleteNetns kills every process left in ns and deletes it.
func deleteNetns(ctx context.Context, ns string) error {
	for i := 0; i < 5; i++ {
		out, err := runOut(ctx, "ip", "netns", "pids", ns)
		if err != nil {
			break
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return run(ctx, "ip", "netns", "del", ns)
}

// staleRE matches the lab's namespace names: a Lab's
// nclab-<pid>-<hex>-{client,router,inet} and a PairLab's site namespaces
// nclab-<pid>-<hex>-{a,b}-{client,router}.
var staleRE = regexp.MustCompile(`^` + regexp.QuoteMeta(nsPrefix) + `(\d+)-[0-9a-f]+-(?:[ab]-)?(client|router|inet)$`)

// RemoveStale deletes the namespaces (and kills their processes) of labs
// whose owning process is dead: the recovery path for a run that was killed
// before its cleanup ran.
func RemoveStale(ctx context.Context, logf func(string, ...any)) error {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		m := staleRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pidAlive(pid) {
			continue
		}
		if logf != nil {
			logf("lab: removing stale namespace %s (pid %d is gone)", e.Name(), pid)
		}
		if err := deleteNetns(ctx, e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// InNetns runs fn on an OS thread that has joined namespace ns. Sockets fn
// opens belong to ns and may be used from any goroutine afterwards. fn must
// not start goroutines that open sockets.
func InNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked unless it returns to its own namespace:
		// a locked goroutine that exits takes its thread with it.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(netnsDir + "/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := setns(target, syscall.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := setns(orig, syscall.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File, nstype int) error {
	if sysSetns == 0 {
		return syscall.ENOSYS
	}
	_, _, e := syscall.RawSyscall(sysSetns, f.Fd(), uintptr(nstype), 0)
	if e != 0 {
		return e
	}
	return nil
}
