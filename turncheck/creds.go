package turncheck

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/natcheck/natcheck/internal/safefile"
	"github.com/natcheck/natcheck/internal/turnauth"
)

// Secret is a password or shared secret. Its String, GoString, Format and
// MarshalText methods print "REDACTED", so it cannot leak by accident
// into output, logs or JSON; Reveal returns the value.
type Secret struct{ s string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{s} }

// Reveal returns the secret's value, for the TURN client only.
func (s Secret) Reveal() string { return s.s }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.s == "" }

func (s Secret) String() string   { return "REDACTED" }
func (s Secret) GoString() string { return "REDACTED" }

// Format implements fmt.Formatter so %v, %s, %q, %x and %+v never print
// the value.
func (s Secret) Format(f fmt.State, _ rune) { f.Write([]byte("REDACTED")) }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// DefaultRESTLifetime is the lifetime of REST credentials when none is
// configured: a day, as coturn's examples use.
const DefaultRESTLifetime = 24 * time.Hour

// Credentials are what a TURN server wants from a client: either long-term
// credentials (RFC 8489 section 9.2; a user name and a password) or a shared
// secret from which time-limited "TURN REST API" credentials are derived, as
// coturn's use-auth-secret checks them
// (draft-uberti-behave-turn-rest-00 section 2.2).
type Credentials struct {
	User     string
	Password Secret
	// SharedSecret, when set, replaces Password: the user name becomes
	// "<expiry unix seconds>:<User>" and the password
	// base64(HMAC-SHA1(secret, user name)).
	SharedSecret Secret
	// Lifetime of REST credentials; zero means DefaultRESTLifetime. A
	// negative lifetime gives expired credentials (for tests).
	Lifetime time.Duration
}

// ErrNoCredentials means a TURN server was given without credentials.
var ErrNoCredentials = errors.New("no TURN credentials")

// Auth names the kind of credentials: "rest" or "long-term".
func (c Credentials) Auth() string {
	if !c.SharedSecret.IsZero() {
		return "rest"
	}
	return "long-term"
}

// Validate checks that the credentials are usable.
func (c Credentials) Validate() error {
	switch {
	case c.SharedSecret.IsZero() && c.User == "" && c.Password.IsZero():
		return fmt.Errorf("%w: give --turn-user and the password in NATCHECK_TURN_PASSWORD or --turn-password-file, or a shared secret in NATCHECK_TURN_SECRET or --turn-secret-file", ErrNoCredentials)
	case c.SharedSecret.IsZero() && c.User == "":
		return fmt.Errorf("%w: a TURN password needs a user name: give --turn-user", ErrNoCredentials)
	case c.SharedSecret.IsZero() && c.Password.IsZero():
		return fmt.Errorf("%w: no TURN password for user %q: set NATCHECK_TURN_PASSWORD or --turn-password-file", ErrNoCredentials, c.User)
	}
	return nil
}

// Resolve returns the user name and password to send at time now, and for
// REST credentials their expiry.
func (c Credentials) Resolve(now time.Time) (user string, password Secret, expires time.Time) {
	if c.SharedSecret.IsZero() {
		return c.User, c.Password, time.Time{}
	}
	lifetime := c.Lifetime
	if lifetime == 0 {
		lifetime = DefaultRESTLifetime
	}
	expires = now.Add(lifetime).Truncate(time.Second)
	user = turnauth.Username(expires, c.User)
	return user, NewSecret(turnauth.Password(c.SharedSecret.Reveal(), user)), expires
}

// LoadCAFile reads PEM CA certificates from file (at most
// safefile.MaxPEM bytes) and returns the system's roots plus them (only
// them if the system pool is unavailable).
func LoadCAFile(file string) (*x509.CertPool, error) {
	pem, err := safefile.Read(file, safefile.MaxPEM)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}
