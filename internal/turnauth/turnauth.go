// Package turnauth implements the time-limited TURN credentials of the
// "TURN REST API" (draft-uberti-behave-turn-rest-00 section 2.2), as
// coturn's use-auth-secret option checks them.
//
// A server and the service that hands out credentials share a secret. The
// user name is the credential's expiry in Unix seconds, optionally followed
// by a colon and a user ("1700003600:alice"); the password is
// base64(HMAC-SHA1(secret, user name)). The client uses them as long-term
// credentials (RFC 8489 section 9.2), so the server derives the password
// from the user name instead of looking it up.
package turnauth

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Errors of Check.
var (
	// ErrMalformed means the user name does not start with an expiry.
	ErrMalformed = errors.New("turnauth: user name is not EXPIRY or EXPIRY:USER")
	// ErrExpired means the credential's expiry has passed.
	ErrExpired = errors.New("turnauth: credential expired")
)

// Username returns the user name of a credential for user that expires at
// expires (truncated to the second): "EXPIRY:USER", or "EXPIRY" alone when
// user is empty.
func Username(expires time.Time, user string) string {
	name := strconv.FormatInt(expires.Unix(), 10)
	if user != "" {
		name += ":" + user
	}
	return name
}

// Password returns the password that goes with username:
// base64(HMAC-SHA1(secret, username)).
func Password(secret, username string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Check checks username at now and returns its user part (the whole name
// when it has none) and the password a holder of secret sends with it. It
// returns ErrMalformed when the name does not start with a decimal expiry
// and ErrExpired when the expiry is before now's second.
func Check(secret, username string, now time.Time) (user, password string, err error) {
	expiry, user, _ := strings.Cut(username, ":")
	t, err := strconv.ParseInt(expiry, 10, 64)
	switch {
	case err != nil:
		return "", "", ErrMalformed
	case t < now.Unix():
		return "", "", ErrExpired
	}
	if user == "" {
		user = username
	}
	return user, Password(secret, username), nil
}
