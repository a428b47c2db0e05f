package turnauth

import (
	"errors"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

func TestUsername(t *testing.T) {
	at := time.Unix(1700003600, 999_000_000)
	for user, want := range map[string]string{"alice": "1700003600:alice", "": "1700003600", "a:b": "1700003600:a:b"} {
		if got := Username(at, user); got != want {
			t.Errorf("Username(%q) = %q, want %q", user, got, want)
		}
	}
}

// TestPassword checks a fixed vector and pion/turn's own REST credential
// generator.
func TestPassword(t *testing.T) {
	// printf %s 1700003600:alice | openssl sha1 -hmac s3cret -binary | base64
	if got, want := Password("s3cret", "1700003600:alice"), "YAFdW/YDZewZsR1QSgUk2IrfbRI="; got != want {
		t.Errorf("Password = %q, want %q", got, want)
	}
	user, pw, err := turn.GenerateLongTermTURNRESTCredentials("s3cret", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := Password("s3cret", user); got != pw {
		t.Errorf("password for %q: %q, pion says %q", user, got, pw)
	}
}

func TestCheck(t *testing.T) {
	now := time.Unix(1700000000, 500_000_000)
	for _, tc := range []struct {
		name, user string
		err        error
	}{
		{"1700000001:alice", "alice", nil},
		{"1700000000:alice", "alice", nil}, // expires within this second
		{"1700000000", "1700000000", nil},
		{"1700000000:", "1700000000:", nil},
		{"1700000000:a:b", "a:b", nil},
		{"1699999999:alice", "", ErrExpired},
		{"alice", "", ErrMalformed},
		{"alice:1800000000", "", ErrMalformed},
		{"", "", ErrMalformed},
		{"99999999999999999999:x", "", ErrMalformed},
	} {
		user, pw, err := Check("s3cret", tc.name, now)
		if !errors.Is(err, tc.err) || user != tc.user {
			t.Errorf("Check(%q) = %q, %v; want %q, %v", tc.name, user, err, tc.user, tc.err)
			continue
		}
		if err == nil && pw != Password("s3cret", tc.name) {
			t.Errorf("Check(%q): password %q is not Password's", tc.name, pw)
		}
	}
}

// TestRoundTrip: what Username and Password make, Check accepts until it
// expires.
func TestRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 0)
	name := Username(now.Add(time.Hour), "bob")
	user, pw, err := Check("k", name, now)
	if err != nil || user != "bob" || pw != Password("k", name) {
		t.Errorf("Check(%q) = %q, %q, %v", name, user, pw, err)
	}
	if _, _, err := Check("k", name, now.Add(time.Hour+time.Second)); !errors.Is(err, ErrExpired) {
		t.Errorf("an hour and a second later: %v", err)
	}
}
