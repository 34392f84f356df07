package controlplane

import (
	"encoding/json"
	"html"
	"regexp"
	"strings"
	"testing"
)

// TestDocsPage: /docs has a table of contents linking every operation,
// and the OpenAPI document's `code` spans are set as code, never shown as
// literal backticks.
func TestDocsPage(t *testing.T) {
	page := string(renderDocs())
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		}
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	toc, _, ok := strings.Cut(page, "</nav>")
	if !ok || !strings.Contains(toc, `<nav id="toc"`) {
		t.Fatal("/docs has no table of contents")
	}
	n := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			n++
			if !strings.Contains(toc, `href="#`+op.OperationID+`"`) {
				t.Errorf("the contents do not link %s %s (#%s)", method, path, op.OperationID)
			}
			if !strings.Contains(page, `id="`+op.OperationID+`"`) {
				t.Errorf("no section for %s %s", method, path)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d operations in the document", n)
	}
	text := html.UnescapeString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(page, ""))
	if strings.Contains(text, "`") {
		i := strings.Index(text, "`")
		t.Errorf("the page shows a literal backtick: %q", text[max(0, i-40):min(len(text), i+40)])
	}
	if !strings.Contains(page, "<code>calnet up</code>") {
		t.Error("`calnet up` in the description is not set as code")
	}
}

func TestCodeSpans(t *testing.T) {
	for in, want := range map[string]string{
		"run `calnet up` now":  "run <code>calnet up</code> now",
		"a <b> and `x<y>`":     "a &lt;b&gt; and <code>x&lt;y&gt;</code>",
		"one ` stray backtick": "one ` stray backtick",
		"":                     "",
	} {
		if got := string(codeSpans(in)); got != want {
			t.Errorf("codeSpans(%q) = %q, want %q", in, got, want)
		}
	}
}
