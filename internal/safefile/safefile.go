// Package safefile reads the files natcheck is given (ICE server lists,
// secrets, CA bundles, configuration) with a size limit, so that a path
// such as /dev/zero or a huge file ends in a clear error instead of
// exhausting memory.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Size limits for the kinds of file natcheck reads.
const (
	MaxConfig = 1 << 20  // YAML and JSON configuration, ICE server lists
	MaxSecret = 64 << 10 // passwords, shared secrets, credential lists
	MaxPEM    = 4 << 20  // CA bundles and certificates
)

// ErrTooLarge is wrapped by the error of Read when the file exceeds the
// limit.
var ErrTooLarge = errors.New("file too large")

// Read returns the contents of the file at path, or an error naming the
// file when it cannot be read or holds more than max bytes. It reads at
// most max+1 bytes whatever the file is: a device, a pipe or a file that
// grows while it is read.
func Read(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError names the file
	}
	defer f.Close()
	return ReadFrom(f, path, max)
}

// ReadFrom reads r, named name in errors, as Read reads a file.
func ReadFrom(r io.Reader, name string, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: more than %s; give a smaller file", name, ErrTooLarge, size(max))
	}
	return b, nil
}

func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
