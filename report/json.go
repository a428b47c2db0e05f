package report

// The JSON Schema of the reports (docs/report-schema.json) and their field
// reference (docs/json.md) are generated from the types' comments.
//go:generate go run ./internal/schemagen

import (
	"encoding/json"
	"io"
)

// WriteJSON writes r as indented JSON followed by a newline.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteJSONLine writes r as one compact line of JSON, for logs and for
// tools that read one object per line.
func WriteJSONLine(w io.Writer, r Report) error {
	return json.NewEncoder(w).Encode(r)
}
