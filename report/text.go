package report

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fatih/color"
	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/natcheck/natcheck/natclass"
)

// TextOptions control the text renderer. The zero value prints without
// colour and without the list of STUN transactions.
type TextOptions struct {
	// Color colours the output with ANSI escape codes. The caller decides
	// (NO_COLOR, --no-color, not a terminal); without it the output holds
	// no escape codes at all.
	Color bool
	// Verbose also lists every STUN transaction of every family
	// (FamilyResult.Tests).
	Verbose bool
}

// WriteText writes r for a person: the one-line answer first, then each
// family's NAT behaviour, the path to each kind of peer, the reasons, the
// servers and, with o.Verbose, every STUN transaction. The output is built
// in memory and written to w with a single Write.
func WriteText(w io.Writer, r Report, o TextOptions) error {
	p := newPalette(o.Color)
	var b bytes.Buffer

	// 1. The answer.
	summary := r.Verdict.Summary
	if summary == "" {
		summary = "No verdict"
	}
	if r.Measured {
		fmt.Fprintln(&b, p.likelihood(r.Verdict.DirectUDP).Sprint(summary))
	} else {
		fmt.Fprintln(&b, p.bad.Sprint(summary))
	}

	// 2. Each family's NAT behaviour.
	for _, f := range r.Families {
		fmt.Fprintln(&b)
		if f.Skipped != "" {
			fmt.Fprintf(&b, "%s: skipped (%s)\n", familyName(f.Family), f.Skipped)
			continue
		}
		fmt.Fprintln(&b, familyName(f.Family))
		if err := renderTable(&b, nil, familyRows(p, f)); err != nil {
			return err
		}
	}

	// 3. The path to each kind of peer, and the fallback.
	switch {
	case allUnknown(r.Verdict.Peers):
		// A column of "unknown" says nothing.
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "Path to each kind of peer: "+p.warn.Sprint("unknown"))
	default:
		fmt.Fprintln(&b)
		// A verdict over both families whose families disagree names the
		// family of each path (natclass.CombineVerdicts).
		named := false
		for _, pp := range r.Verdict.Peers {
			named = named || pp.Family != ""
		}
		rows := make([][]string, 0, len(r.Verdict.Peers))
		for _, pp := range r.Verdict.Peers {
			row := []string{pp.Peer, p.path(pp.Route).Sprint(pp.Route.String())}
			if named {
				row = append(row, familyName(pp.Family))
			}
			rows = append(rows, row)
		}
		head := []string{"peer behind", "path from here"}
		switch {
		case named:
			head = append(head, "over")
		case r.Family != "" && testedFamilies(r) > 1:
			head[1] = "path from here (" + familyName(r.Family) + ")"
		}
		if err := renderTable(&b, head, rows); err != nil {
			return err
		}
	}
	turnNames := func(relays []string) string {
		ts := make([]string, 0, len(relays))
		for _, t := range relays {
			ts = append(ts, strings.TrimPrefix(t, "turn-"))
		}
		return strings.Join(ts, ", ")
	}
	switch v := r.Verdict; {
	case v.RelayVerified != nil && len(v.RelayVerified) > 0:
		// TURN servers were checked: say what was proven, not the theory.
		fmt.Fprintf(&b, "If direct fails: TURN over %s, verified by data through the relay\n", p.good.Sprint(turnNames(v.RelayVerified)))
	case v.RelayVerified != nil:
		fmt.Fprintf(&b, "If direct fails: %s (TURN over %s would be the way, but no TURN server given relayed data from here)\n", p.bad.Sprint("no verified relay"), turnNames(v.Relay))
	case len(v.Relay) > 0:
		fmt.Fprintf(&b, "If direct fails: TURN over %s (not verified: give --turn to check a server)\n", turnNames(v.Relay))
	}
	if w := r.Verdict.WayOut; w.Via != "" && w.Via != natclass.WayUnknown {
		way := w.String()
		c := p.good
		switch w.Via {
		case natclass.WayNone:
			c = p.bad
		case natclass.WayTURNUDP, natclass.WayTURNTCP, natclass.WayTURNTLS:
			c = p.warn
		}
		if w.Family != "" {
			way += " over " + familyName(w.Family)
		}
		fmt.Fprintf(&b, "Way out: %s", c.Sprint(way))
		if w.Cost != "" {
			fmt.Fprintf(&b, " (cost: %s)", w.Cost)
		}
		fmt.Fprintln(&b)
	} else if w.Via == natclass.WayUnknown && w.Cost != "" {
		fmt.Fprintf(&b, "Way out: %s (%s)\n", p.warn.Sprint("not settled"), w.Cost)
	}

	if r.Lifetime != nil {
		fmt.Fprintln(&b, lifetimeText(p, r.Lifetime))
	}
	if r.PortMapping != nil {
		fmt.Fprintln(&b, portMappingText(p, r.PortMapping))
	}

	// 4. Why.
	writeReasons(&b, "Why:", r.Reasons)
	for _, f := range r.Families {
		if f.Skipped == "" && f.Family != r.Family {
			writeReasons(&b, "Why ("+familyName(f.Family)+"):", f.Reasons)
		}
	}

	// 5. Servers.
	if len(r.Servers) > 0 {
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "Servers")
		rows := make([][]string, 0, len(r.Servers))
		for _, s := range r.Servers {
			rows = append(rows, serverRow(p, s))
		}
		head := []string{"server", "family", "address", "RTT ms", "RFC 5780", "CHANGE-REQUEST", "result"}
		if err := renderTable(&b, head, rows); err != nil {
			return err
		}
	}

	// TURN checks and ICE candidates, when TURN servers were given.
	if err := writeTURN(&b, p, r.TURN, r.Candidates); err != nil {
		return err
	}

	// 6. Paths out, per transport.
	if len(r.Paths) > 0 {
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "Paths")
		rows := make([][]string, 0, len(r.Paths))
		for _, pa := range r.Paths {
			rows = append(rows, pathRow(p, pa))
		}
		head := []string{"transport", "server", "address", "ok", "time ms", "result"}
		if err := renderTable(&b, head, rows); err != nil {
			return err
		}
	}

	// 7. Every transaction.
	if o.Verbose {
		for _, f := range r.Families {
			if f.Skipped != "" {
				continue
			}
			fmt.Fprintln(&b)
			fmt.Fprintf(&b, "Tests (%s)\n", familyName(f.Family))
			if len(f.Tests) == 0 {
				fmt.Fprintln(&b, "  none sent")
				continue
			}
			rows := make([][]string, 0, len(f.Tests))
			for _, t := range f.Tests {
				rows = append(rows, testRow(p, t))
			}
			head := []string{"test", "server", "local", "dest", "change-request", "sent", "status", "from", "mapped", "RTT ms"}
			if err := renderTable(&b, head, rows); err != nil {
				return err
			}
		}
	}

	// 8. Provenance.
	fmt.Fprintln(&b)
	name := "natcheck"
	if r.Version != "" {
		name += " " + r.Version
	}
	fmt.Fprintf(&b, "%s · %d ms\n", name, r.DurationMS)

	_, err := w.Write(b.Bytes())
	return err
}

// palette holds the colours of one rendering; each is enabled or disabled
// on its own instance, so the global color.NoColor is never consulted or
// changed.
type palette struct {
	good, warn, bad, plain *color.Color
}

func newPalette(on bool) palette {
	p := palette{
		good:  color.New(color.FgGreen),
		warn:  color.New(color.FgYellow),
		bad:   color.New(color.FgRed),
		plain: color.New(color.Reset),
	}
	for _, c := range []*color.Color{p.good, p.warn, p.bad} {
		if on {
			c.EnableColor()
		} else {
			c.DisableColor()
		}
	}
	// plain is never coloured.
	p.plain.DisableColor()
	return p
}

func (p palette) likelihood(l natclass.Likelihood) *color.Color {
	switch l {
	case natclass.LikelihoodLikely:
		return p.good
	case natclass.LikelihoodUnlikely, natclass.LikelihoodImpossible:
		return p.bad
	}
	return p.warn
}

func (p palette) path(x natclass.Route) *color.Color {
	switch x {
	case natclass.RouteDirect, natclass.RouteProbablyDirect:
		return p.good
	case natclass.RouteRelay:
		return p.bad
	}
	return p.warn
}

func (p palette) natType(t natclass.Type) *color.Color {
	switch t {
	case natclass.TypeOpenInternet, natclass.TypeFirewall, natclass.TypeFullCone, natclass.TypeRestrictedCone:
		return p.good
	case natclass.TypeSymmetric, natclass.TypeUDPBlocked:
		return p.bad
	}
	return p.warn // port-restricted cone, unknown
}

func (p palette) mapping(b natclass.Behavior) *color.Color {
	switch b {
	case natclass.BehaviorNone, natclass.BehaviorEndpointIndependent:
		return p.good
	case natclass.BehaviorAddressDependent, natclass.BehaviorAddressAndPortDependent:
		return p.bad
	}
	return p.warn
}

func (p palette) filtering(b natclass.Behavior) *color.Color {
	switch b {
	case natclass.BehaviorNone, natclass.BehaviorEndpointIndependent, natclass.BehaviorAddressDependent:
		return p.good
	}
	return p.warn // address-and-port-dependent, unknown
}

// tri colours a yes/no/unknown answer: yes and no get the given colours,
// unknown is always a warning.
func (p palette) tri(t natclass.Tri, yes, no *color.Color, unknown string) string {
	switch t {
	case natclass.TriYes:
		return yes.Sprint("yes")
	case natclass.TriNo:
		return no.Sprint("no")
	}
	if unknown == "" {
		unknown = "unknown"
	}
	return p.warn.Sprint(unknown)
}

// loss shows the UDP loss measured in the run: "0% (0 of 7 sends)", a
// warning colour when any send went unanswered.
func (p palette) loss(l *natclass.Loss) string {
	if l == nil || l.Sends == 0 {
		return p.warn.Sprint("not measured")
	}
	c := p.good
	if l.Lost > 0 {
		c = p.warn
	}
	return c.Sprintf("%.0f%% (%d of %d sends unanswered)", 100*l.Fraction, l.Lost, l.Sends)
}

func allUnknown(ps []natclass.PeerRoute) bool {
	for _, pp := range ps {
		if pp.Route != natclass.RouteUnknown {
			return false
		}
	}
	return true
}

func familyName(f string) string {
	switch f {
	case "ipv4":
		return "IPv4"
	case "ipv6":
		return "IPv6"
	}
	return f
}

func testedFamilies(r Report) int {
	n := 0
	for _, f := range r.Families {
		if f.Skipped == "" {
			n++
		}
	}
	return n
}

func familyRows(p palette, f FamilyResult) [][]string {
	n := f.NAT
	udp := p.good.Sprint("yes")
	switch {
	case n.Type == natclass.TypeUDPBlocked:
		udp = p.bad.Sprint("no")
	case !f.UDP:
		// No reply, but not enough evidence to call UDP blocked (DNS
		// failed, one server only, the run was cut short).
		udp = p.warn.Sprint("unknown (no server answered)")
	}
	rows := [][]string{
		{"NAT type", p.natType(n.Type).Sprint(n.Type.String())},
		{"UDP out", udp},
	}
	if !f.UDP {
		// Nothing else was measured; a column of "unknown" says nothing.
		return rows
	}
	addrLabel := "public address"
	if len(f.PublicAddresses) > 1 {
		addrLabel = "public addresses"
	}
	addrs := strings.Join(f.PublicAddresses, ", ")
	if addrs == "" {
		addrs = p.warn.Sprint("none seen")
	}
	hairpinUnknown := "unknown (not tested)"
	if n.HairpinTested {
		hairpinUnknown = "unknown (test did not finish)"
	}

	hairpin := p.tri(n.Hairpin, p.good, p.warn, hairpinUnknown)
	if n.BehindNAT == natclass.TriNo {
		hairpin = p.plain.Sprint("does not apply (no NAT)")
	}
	rfc := n.RFC5780Server
	if rfc == "" {
		rfc = p.warn.Sprint("none (filtering not tested)")
	}
	rows = append(rows,
		[]string{"mapping", p.mapping(n.Mapping).Sprint(n.Mapping.String())},
		[]string{"filtering", p.filtering(n.Filtering).Sprint(n.Filtering.String())},
		[]string{addrLabel, addrs},
		[]string{"behind NAT", p.tri(n.BehindNAT, p.plain, p.good, "")},
		[]string{"mapping varies by destination", p.tri(n.MappingVariesByDestination, p.bad, p.good, "")},
		[]string{"port preservation", p.tri(n.PortPreservation, p.good, p.plain, "")},
		[]string{"carrier-grade NAT", p.tri(n.CGNAT, p.warn, p.good, "")},
		[]string{"ALG", p.tri(n.ALG, p.bad, p.good, "unknown (no MAPPED-ADDRESS to compare)")},
		[]string{"hairpinning", hairpin},
		[]string{"RFC 5780 server", rfc},
		[]string{"UDP loss", p.loss(f.UDPLoss)},
	)
	if n.TCP != natclass.TriUnknown {
		rows = append(rows,
			[]string{"TCP out", p.tri(n.TCP, p.good, p.bad, "")},
			[]string{"TCP mapping endpoint-independent", p.tri(n.TCPMappingEndpointIndependent, p.good, p.warn, "unknown (needs two server addresses answering over TCP)")},
			[]string{"TCP port preservation", p.tri(n.TCPPortPreservation, p.good, p.plain, "")},
		)
	}
	return rows
}

func pathRow(p palette, pa Attempt) []string {
	ok := p.bad.Sprint("no")
	switch {
	case pa.OK:
		ok = p.good.Sprint("yes")
	case pa.Reachable:
		ok = p.warn.Sprint("reachable")
	}
	result := pa.Mapped
	switch {
	case pa.Error != "":
		c := p.bad
		if pa.Reachable {
			c = p.warn
		}
		result = c.Sprint(pa.Error)
	case result == "":
		result = "-"
	}
	return []string{pa.Transport, pa.Server, pa.Address, ok, rtt(pa.TimeMS), result}
}

func serverRow(p palette, s Server) []string {
	rfc := "-"
	if s.RFC5780 != natclass.TriUnknown {
		rfc = s.RFC5780.String()
	}
	result := s.Mapped
	switch {
	case s.Error != "":
		result = p.bad.Sprint(s.Error)
	case result == "" && s.Answered:
		result = "answered"
	case result == "":
		result = "-"
	}
	return []string{s.Name, familyName(s.Family), dash(s.Address), rtt(s.RTTMS), rfc, dash(s.ChangeRequest), result}
}

func testRow(p palette, t Test) []string {
	var status string
	switch {
	case t.Error != "":
		status = p.bad.Sprint("not sent: " + t.Error)
	case t.Status == natclass.StatusReply:
		status = p.good.Sprint(t.Status.String())
	case t.Status == natclass.StatusErrorReply:
		s := t.Status.String()
		if t.ErrorCode != 0 {
			s += " " + strconv.Itoa(t.ErrorCode)
		}
		status = p.bad.Sprint(s)
	default:
		status = p.warn.Sprint(t.Status.String())
	}
	return []string{t.Name, dash(t.Server), dash(t.Local), dash(t.Dest), dash(t.ChangeRequest), strconv.Itoa(t.Sent), status, dash(t.From), dash(t.Mapped), rtt(t.RTTMS)}
}

func writeReasons(b *bytes.Buffer, title string, reasons []string) {
	if len(reasons) == 0 {
		return
	}
	fmt.Fprintln(b)
	fmt.Fprintln(b, title)
	for _, s := range reasons {
		fmt.Fprintf(b, "  - %s\n", s)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func rtt(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64)
}

// renderTable writes an ASCII table: a header row when head is not nil,
// then rows, left aligned, never wrapped or reformatted.
func renderTable(w io.Writer, head []string, rows [][]string) error {
	t := tablewriter.NewTable(w,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{Symbols: tw.NewSymbols(tw.StyleASCII)})),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAutoWrap(tw.WrapNone),
	)
	if head != nil {
		t.Header(head)
	}
	if err := t.Bulk(rows); err != nil {
		return fmt.Errorf("report: table: %w", err)
	}
	if err := t.Render(); err != nil {
		return fmt.Errorf("report: table: %w", err)
	}
	return nil
}
