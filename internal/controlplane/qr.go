package controlplane

import (
	"fmt"
	"net/http"
	"strings"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/internal/calproto"
)

// card builds a Cal's address card from the registry and its blessing.
func (s *Server) card(rec *CalRecord) (*calproto.Card, *APIError) {
	id, err := identity.ParseID(rec.ID)
	if err != nil {
		return nil, apiErr(404, "no such cal")
	}
	s.trustMu.RLock()
	b, ok := s.state.Blessings[id]
	s.trustMu.RUnlock()
	if !ok {
		return nil, apiErr(404, "cal %s has no blessing", rec.ID)
	}
	k := b.ChildKey()
	return &calproto.Card{Cal: rec.ID, Namespace: rec.Namespace, URL: s.routerURL(rec.Namespace), Fingerprint: calproto.Fingerprint(k.Ed25519, k.MLDSA)}, nil
}

// handleCard serves a Cal's address card as JSON, or as its QR code
// (format=png|svg).
func (s *Server) handleCard(w http.ResponseWriter, r *http.Request, pr principal) {
	rec, aerr := s.resolveScoped(r.Context(), pr, r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	c, aerr := s.card(rec)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" || format == "json" {
		writeJSON(w, 200, c)
		return
	}
	if format != "png" && format != "svg" {
		writeError(w, apiErr(400, "format: %q, want json, png or svg", format))
		return
	}
	body, ctype, err := CardQR(c, format)
	if err != nil {
		writeError(w, apiErr(500, "%v", err))
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Write(body)
}

// CardQR renders an address card as a QR code: format "png" (320 pixels
// square, with the standard 4-module quiet zone) or "svg". It returns the
// image and its media type.
func CardQR(c *calproto.Card, format string) ([]byte, string, error) {
	text, err := jsonMarshal(c)
	if err != nil {
		return nil, "", fmt.Errorf("qr: %w", err)
	}
	q, err := qrcode.New(string(text), qrcode.Medium)
	if err != nil {
		return nil, "", fmt.Errorf("qr: %w", err)
	}
	switch format {
	case "png":
		png, err := q.PNG(320)
		if err != nil {
			return nil, "", fmt.Errorf("qr: %w", err)
		}
		return png, "image/png", nil
	case "svg":
		return []byte(qrSVG(q.Bitmap())), "image/svg+xml", nil
	default:
		return nil, "", fmt.Errorf("format: %q, want json, png or svg", format)
	}
}

// qrSVG renders a QR bitmap as SVG, one rect per dark module.
func qrSVG(bm [][]bool) string {
	n := len(bm)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges"><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n, n, n)
	for y, row := range bm {
		for x, dark := range row {
			if dark {
				fmt.Fprintf(&sb, "M%d %dh1v1h-1z", x, y)
			}
		}
	}
	sb.WriteString(`"/></svg>`)
	return sb.String()
}
