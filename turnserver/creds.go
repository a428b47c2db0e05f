package turnserver

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/safefile"
	"github.com/natcheck/natcheck/internal/turnauth"
)

// maxUsersFile bounds the size of a users file: larger than
// safefile.MaxSecret, which bounds a secret file, for deployments with many
// static users.
const maxUsersFile = 4 << 20

// ReadUsersFile reads static users for realm from the file name: one
// USER:PASSWORD a line, or USER:0xKEY with the hexadecimal long-term key
// MD5(USER:realm:PASSWORD) (coturn's format); blank lines and lines
// starting with # are skipped. It returns the users' long-term keys for
// Config.Users. Errors name the file and line, never its contents. It warns
// through log (nil: no warning) when the file is readable by group or
// others.
func ReadUsersFile(name, realm string, log *slog.Logger) (map[string][]byte, error) {
	data, err := readCredentialFile(name, maxUsersFile, log)
	if err != nil {
		return nil, err
	}
	keys := map[string][]byte{}
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(nil, maxUsersFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		if !ok || user == "" || pass == "" {
			return nil, fmt.Errorf("%s line %d: want USER:PASSWORD", name, n)
		}
		if _, dup := keys[user]; dup {
			return nil, fmt.Errorf("%s line %d: user %q listed twice", name, n, user)
		}
		if k, ok := strings.CutPrefix(pass, "0x"); ok && len(k) == 32 {
			key, err := hex.DecodeString(k)
			if err != nil {
				return nil, fmt.Errorf("%s line %d: bad 0x key", name, n)
			}
			keys[user] = key
			continue
		}
		keys[user] = turn.GenerateAuthKey(user, realm, pass)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no users", name)
	}
	return keys, nil
}

// ReadSecretFile reads the REST API shared secret for Config.Secret from
// the file name: its first line that is not blank and does not start with
// #, trimmed. The file holds at most safefile.MaxSecret bytes. It warns
// like ReadUsersFile.
func ReadSecretFile(name string, log *slog.Logger) (string, error) {
	data, err := readCredentialFile(name, safefile.MaxSecret, log)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(data, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	return "", fmt.Errorf("%s: no secret in it", name)
}

// readCredentialFile reads a file of at most max bytes (whatever it is: a
// device such as /dev/zero ends in an error) and warns when others can read
// it.
func readCredentialFile(name string, max int64, log *slog.Logger) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 && log != nil {
		log.Warn("credential file is readable by group or others; chmod 600 it", "file", name, "mode", fi.Mode().Perm().String())
	}
	b, err := safefile.ReadFrom(f, name, max)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// authenticator checks the credentials of Config.Users and Config.Secret.
type authenticator struct {
	realm  string
	keys   map[string][]byte
	secret string
	now    func() time.Time
	// refused, if set, is told of each credential auth rejects (pion
	// reports wrong passwords through OnAuth, these never).
	refused func(user, why string)
}

// auth is the TURN AuthHandler: static users first, then REST API
// credentials. It returns the user for the quota and the long-term key.
func (a *authenticator) auth(ra *turn.RequestAttributes) (string, []byte, bool) {
	refuse := func(why string) (string, []byte, bool) {
		if a.refused != nil {
			a.refused(ra.Username, why)
		}
		return "", nil, false
	}
	if ra.Realm != a.realm {
		return refuse("wrong realm")
	}
	if key, ok := a.keys[ra.Username]; ok {
		return ra.Username, key, true
	}
	if a.secret == "" {
		return refuse("unknown user")
	}
	user, password, err := turnauth.Check(a.secret, ra.Username, a.now())
	switch {
	case errors.Is(err, turnauth.ErrExpired):
		return refuse("expired REST credential")
	case err != nil:
		return refuse("unknown user")
	}
	return user, turn.GenerateAuthKey(ra.Username, ra.Realm, password), true
}
