package controlplane

import (
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/soulfra/calnet/internal/cpu"
	"github.com/soulfra/calnet/internal/template"
)

// templatesDir holds operators' templates, <name>.yaml.
func (s *Server) templatesDir() string { return filepath.Join(s.cfg.DataDir, "templates") }

// resolveTemplate finds a template by name (built-in "default" or
// <data>/templates/<name>.yaml) or parses one given inline.
func (s *Server) resolveTemplate(name, inline string) (*template.Template, *APIError) {
	if inline != "" {
		if name != "" {
			return nil, apiErr(400, "template and template_yaml: give one of them")
		}
		t, err := template.Parse([]byte(inline))
		if err != nil {
			return nil, apiErr(400, "template_yaml: %v", err)
		}
		return t, nil
	}
	if name == "" || name == "default" {
		return template.Default(), nil
	}
	if !validTemplateName(name) {
		return nil, apiErr(400, "template: %q is not a template name", name)
	}
	b, err := os.ReadFile(filepath.Join(s.templatesDir(), name+".yaml"))
	if err != nil {
		return nil, apiErr(404, "template: no template %q (built-in: default; yours go in %s)", name, s.templatesDir())
	}
	t, err := template.Parse(b)
	if err != nil {
		return nil, apiErr(400, "template %s: %v", name, err)
	}
	return t, nil
}

func validTemplateName(n string) bool {
	if n == "" || len(n) > 63 {
		return false
	}
	for _, r := range n {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// applyTemplate fills what the request leaves out from the template (its
// quantities were checked when it was parsed).
func applyTemplate(p *SpawnParams, t *template.Template) {
	if len(p.Permissions) == 0 {
		p.Permissions = t.Permissions
	}
	if p.RestartPolicy == "" {
		p.RestartPolicy = t.Restart
	}
	if p.CPUMillis == 0 && t.Resources.CPU != "" {
		p.CPUMillis, _ = cpu.Millis(t.Resources.CPU)
	}
	if p.MemoryBytes == 0 && t.Resources.Memory != "" {
		p.MemoryBytes, _ = cpu.Bytes(t.Resources.Memory)
	}
	if p.PIDs == 0 {
		p.PIDs = t.Resources.PIDs
	}
	if p.DiskBytes == 0 && t.Resources.Disk != "" {
		p.DiskBytes, _ = cpu.Bytes(t.Resources.Disk)
	}
}

type templateInfo struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Source      string `json:"source"`
	Error       string `json:"error,omitempty"`
}

func (s *Server) handleTemplates(w http.ResponseWriter, r *http.Request) {
	out := []templateInfo{{Name: "default", Description: template.Default().Description, Source: "built-in"}}
	entries, _ := os.ReadDir(s.templatesDir())
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".yaml")
		if !ok || !validTemplateName(name) || name == "default" {
			continue
		}
		ti := templateInfo{Name: name, Source: filepath.Join(s.templatesDir(), e.Name())}
		if t, aerr := s.resolveTemplate(name, ""); aerr != nil {
			ti.Error = aerr.Msg
		} else {
			ti.Description = t.Description
		}
		out = append(out, ti)
	}
	sort.Slice(out[1:], func(i, j int) bool { return out[1+i].Name < out[1+j].Name })
	writeJSON(w, 200, out)
}

func (s *Server) handleTemplate(w http.ResponseWriter, r *http.Request) {
	t, aerr := s.resolveTemplate(r.PathValue("name"), "")
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, 200, t)
}
