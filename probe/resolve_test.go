package probe

import (
	"strings"
	"testing"
)

func TestCheckHostName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	// 4 labels of 63 and dots: 255 characters; 3 of 63 and one of 61: 253.
	name253 := strings.Join([]string{label63, label63, label63, strings.Repeat("b", 61)}, ".")
	if len(name253) != 253 {
		t.Fatalf("test name is %d long", len(name253))
	}
	for _, good := range []string{
		"localhost", "stun.example.com", "stun.example.com.", "STUN.Example.COM",
		"_stun._udp.example.com", "a-b.example", "xn--bcher-kva.example", "1.example", "a.b2",
		label63 + ".example", name253, name253 + ".",
	} {
		if err := CheckHostName(good); err != nil {
			t.Errorf("CheckHostName(%q): %v", good, err)
		}
	}
	for in, want := range map[string]string{
		"":                               "empty host name",
		".":                              "empty host name",
		strings.Repeat("a", 300):         "300 characters long; DNS allows at most 253",
		name253 + "b":                    "254 characters long",
		strings.Repeat("a", 64) + ".com": "64 characters long; DNS allows at most 63",
		"a..b":                           "empty label",
		".a.b":                           "empty label",
		"-a.example":                     "begins or ends with '-'",
		"a-.example":                     "begins or ends with '-'",
		"a b.example":                    `character ' ' is not allowed`,
		"a/b":                            `character '/' is not allowed`,
		"a%zz":                           `character '%' is not allowed`,
		"bücher.example":                 "xn--",
		"1.2.3":                          "neither an IP address nor a host name",
		"300.1.1.1":                      "neither an IP address nor a host name",
		"example.123":                    "neither an IP address nor a host name",
	} {
		err := CheckHostName(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckHostName(%.40q...) = %v, want an error with %q", in, err, want)
		}
	}
}
