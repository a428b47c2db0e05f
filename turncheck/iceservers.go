package turncheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/natcheck/natcheck/internal/safefile"
	"github.com/natcheck/natcheck/probe"
	natstun "github.com/natcheck/natcheck/stun"
)

// Server is one TURN URL with the credentials to use on it.
type Server struct {
	URL         URL
	Credentials Credentials
}

// ICEServers is what an iceServers file holds: TURN servers with their
// credentials, and the STUN servers (as HOST:PORT) listed beside them.
type ICEServers struct {
	TURN []Server
	STUN []string
}

type iceServer struct {
	URLs       json.RawMessage `json:"urls"`
	URL        json.RawMessage `json:"url"` // the old, singular name
	Username   string          `json:"username"`
	Credential *string         `json:"credential"`
}

// ParseICEServers reads a WebRTC iceServers JSON array (the RTCIceServer
// dictionary of the W3C WebRTC specification): objects with urls (a string
// or an array of strings), username and credential, as TURN providers'
// credential APIs return them. An object {"iceServers": [...]} is accepted
// too. turn: and turns: URLs carry the object's username and credential;
// stun: URLs over UDP are returned as HOST:PORT (stun:...?transport=tcp
// ones are skipped: ICE gathers over UDP). It reads at most
// safefile.MaxConfig bytes of r: a longer input is an error.
func ParseICEServers(r io.Reader) (ICEServers, error) {
	var out ICEServers
	data, err := safefile.ReadFrom(r, "iceServers list", safefile.MaxConfig)
	if err != nil {
		return out, err
	}
	var list []iceServer
	if err := json.Unmarshal(data, &list); err != nil {
		var wrapped struct {
			ICEServers []iceServer `json:"iceServers"`
		}
		if err2 := json.Unmarshal(data, &wrapped); err2 != nil || wrapped.ICEServers == nil {
			return out, fmt.Errorf("not a JSON array of iceServers: %w", jsonError(err))
		}
		list = wrapped.ICEServers
	}
	for i, s := range list {
		raw := s.URLs
		if len(raw) == 0 {
			raw = s.URL
		}
		var urls []string
		var one string
		switch {
		case len(raw) == 0:
			return out, fmt.Errorf("entry %d: no urls", i)
		case json.Unmarshal(raw, &one) == nil:
			urls = []string{one}
		case json.Unmarshal(raw, &urls) == nil:
		default:
			return out, fmt.Errorf("entry %d: urls must be a string or an array of strings", i)
		}
		for _, u := range urls {
			lower := strings.ToLower(u)
			if strings.HasPrefix(lower, "stun:") || strings.HasPrefix(lower, "stuns:") {
				if strings.HasPrefix(lower, "stuns:") {
					return out, fmt.Errorf("entry %d: %q: stuns: is not supported", i, natstun.RedactURI(u))
				}
				if strings.Contains(u, "@") {
					return out, fmt.Errorf("entry %d: STUN URL %q: credentials do not belong in the URL", i, natstun.RedactURI(u))
				}
				t, err := probe.ParseTarget(u)
				if err != nil {
					return out, fmt.Errorf("entry %d: %w", i, err)
				}
				if t.UDP() { // ICE gathers server-reflexive candidates over UDP only
					out.STUN = append(out.STUN, net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))))
				}
				continue
			}
			pu, err := ParseURL(u)
			if err != nil {
				return out, fmt.Errorf("entry %d: %w", i, err)
			}
			c := Credentials{User: s.Username}
			if s.Credential != nil {
				c.Password = NewSecret(*s.Credential)
			}
			if err := c.Validate(); err != nil {
				return out, fmt.Errorf("entry %d (%s): %w", i, pu, err)
			}
			out.TURN = append(out.TURN, Server{URL: pu, Credentials: c})
		}
	}
	if len(out.TURN) == 0 && len(out.STUN) == 0 {
		return out, errors.New("no servers in the iceServers list")
	}
	return out, nil
}

// jsonError drops the input from JSON errors: the file holds credentials.
func jsonError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("unexpected %s at byte %d", te.Value, te.Offset)
	}
	return err
}
