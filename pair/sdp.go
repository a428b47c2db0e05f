package pair

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
)

// The SDP of natcheck pair is one m=application line, as a WebRTC data
// channel's, with the ICE credentials (RFC 8839 section 5.4) and
// ice-options:trickle (RFC 8840 section 4.1.1). Candidates are not in it:
// they are trickled.

// offerSDP returns the SDP offer or answer carrying ufrag and pwd.
func offerSDP(ufrag, pwd string, sessionID uint64) (string, error) {
	s, err := sdp.NewJSEPSessionDescription(false)
	if err != nil {
		return "", err
	}
	s.Origin.SessionID = sessionID
	s.Origin.SessionVersion = 1
	s.SessionName = "natcheck-pair"
	s.WithICETrickleAdvertised()
	m := &sdp.MediaDescription{
		MediaName: sdp.MediaName{
			Media:   "application",
			Port:    sdp.RangedPort{Value: 9},
			Protos:  []string{"UDP", "DTLS", "SCTP"},
			Formats: []string{"webrtc-datachannel"},
		},
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN", AddressType: "IP4", Address: &sdp.Address{Address: "0.0.0.0"},
		},
	}
	m.WithValueAttribute("mid", "0")
	m.WithICECredentials(ufrag, pwd)
	m.WithValueAttribute("ice-options", "trickle")
	s.WithMedia(m)
	b, err := s.Marshal()
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// parseSDP returns the ICE credentials of an offer or answer, checked as
// RFC 8839 section 5.4 says: ufrag 4 to 256 and pwd 22 to 256 ice-chars.
func parseSDP(text string) (ufrag, pwd string, err error) {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(text); err != nil {
		return "", "", fmt.Errorf("not an SDP session description: %w", err)
	}
	if len(s.MediaDescriptions) != 1 || s.MediaDescriptions[0].MediaName.Media != "application" {
		return "", "", errors.New("want exactly one m=application section")
	}
	m := s.MediaDescriptions[0]
	// Media-level attributes win over session-level ones.
	get := func(key string) (string, bool) {
		if v, ok := m.Attribute(key); ok {
			return v, true
		}
		return s.Attribute(key)
	}
	ufrag, ok := get("ice-ufrag")
	if !ok {
		return "", "", errors.New("no a=ice-ufrag")
	}
	pwd, ok = get("ice-pwd")
	if !ok {
		return "", "", errors.New("no a=ice-pwd")
	}
	if !iceChars(ufrag, 4, 256) {
		return "", "", errors.New("a=ice-ufrag: want 4 to 256 letters, digits, + or /")
	}
	if !iceChars(pwd, 22, 256) {
		return "", "", errors.New("a=ice-pwd: want 22 to 256 letters, digits, + or /")
	}
	return ufrag, pwd, nil
}

// iceChars reports whether s is min to max ice-chars (RFC 8839 section
// 5.4: ALPHA / DIGIT / "+" / "/").
func iceChars(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/") == ""
}
