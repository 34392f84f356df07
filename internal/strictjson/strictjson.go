// Package strictjson decodes untrusted JSON documents with the checks that
// encoding/json leaves out: a size limit, a nesting limit, object keys
// that must match a field's JSON name exactly (encoding/json matches them
// case-insensitively, so "Permissions" or "SERIAL" would fill a field),
// rejection of duplicated keys, unknown fields and trailing data.
//
// Every decode of bytes calnet did not produce itself goes through
// Unmarshal or Decode (internal/archtest forbids json.Unmarshal and
// json.NewDecoder elsewhere). A type with its own UnmarshalJSON is
// checked for structure only (duplicates, nesting) and must use this
// package inside its UnmarshalJSON.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// MaxNesting is the deepest object/array nesting any calnet document may use.
const MaxNesting = 16

// ErrTooLarge is returned (wrapped) for a document over its size limit.
var ErrTooLarge = errors.New("over the size limit")

// Unmarshal decodes data into v. It fails, naming the key and its path,
// when data is larger than maxSize bytes, nests deeper than MaxNesting,
// repeats a key inside one object, has a key that is not exactly the JSON
// name of one of v's fields (case matters), or carries anything after the
// first value.
func Unmarshal(data []byte, maxSize int, v any) error {
	if len(data) > maxSize {
		return fmt.Errorf("document is %d bytes, %w of %d", len(data), ErrTooLarge, maxSize)
	}
	if err := check(data, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

// Decode reads one document of at most maxSize bytes from r (a request
// body) and decodes it into v as Unmarshal does. Anything after the
// document, even another document, is an error.
func Decode(r io.Reader, maxSize int, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, int64(maxSize)+1))
	if err != nil {
		return fmt.Errorf("reading the document: %w", err)
	}
	if len(b) > maxSize {
		return fmt.Errorf("document is over %d bytes, %w", maxSize, ErrTooLarge)
	}
	return Unmarshal(b, maxSize, v)
}

// CheckStructure walks data and reports duplicated keys (naming the key
// and its path), nesting deeper than MaxNesting, invalid JSON and data
// after the document, without a type to check the keys against.
func CheckStructure(data []byte) error { return check(data, nil) }

// check scans data along the type t (nil: any structure): one pass over
// the bytes that copies nothing but object keys.
func check(data []byte, t reflect.Type) error {
	s := &scanner{data: data}
	s.ws()
	if s.i == len(s.data) {
		return errors.New("invalid JSON: empty document")
	}
	if err := s.value(t, 0); err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.data) {
		return errors.New("invalid JSON: data after the document")
	}
	return nil
}

// scanner walks a JSON document. It finds structure (objects, arrays,
// keys); encoding/json, which decodes the document afterwards, validates
// the rest (numbers, literals, escapes in values).
type scanner struct {
	data []byte
	i    int
	path []string // of the value being scanned, rendered only for errors
}

func (s *scanner) where() string { return "$" + strings.Join(s.path, "") }

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON: "+format+" at %s", append(args, s.where())...)
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
)

// decodesItself reports whether t takes its JSON as it is (a json.RawMessage
// or a json.Unmarshaler): its keys are not checked against t.
func decodesItself(t reflect.Type) bool {
	return t == rawMessageType || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)
}

// value scans one value of type t, depth containers deep.
func (s *scanner) value(t reflect.Type, depth int) error {
	for t != nil && t.Kind() == reflect.Pointer && !decodesItself(t) {
		t = t.Elem()
	}
	if t != nil && (t.Kind() == reflect.Interface || decodesItself(t)) {
		t = nil
	}
	s.ws()
	if s.i == len(s.data) {
		return s.errorf("unexpected end of the document")
	}
	switch c := s.data[s.i]; {
	case c == '{' || c == '[':
		if depth >= MaxNesting {
			return s.errorf("nesting deeper than %d", MaxNesting)
		}
		s.i++
		if c == '{' {
			return s.object(t, depth+1)
		}
		return s.array(t, depth+1)
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z':
		// A number or a literal: encoding/json checks which.
		for s.i < len(s.data) {
			c := s.data[s.i]
			if !(c == '-' || c == '+' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				break
			}
			s.i++
		}
		return nil
	default:
		return s.errorf("unexpected character %q", c)
	}
}

// str scans a string (at its opening quote) and returns its raw content
// and whether encoding/json reads it differently (escapes, or bytes
// outside ASCII, which it may replace with U+FFFD).
func (s *scanner) str() (raw []byte, escaped bool, err error) {
	start := s.i + 1
	for j := start; j < len(s.data); j++ {
		switch c := s.data[j]; {
		case c >= 0x80:
			escaped = true
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			s.i = j + 1
			return s.data[start:j], escaped, nil
		case c < 0x20:
			return nil, false, s.errorf("control character in a string")
		}
	}
	return nil, false, s.errorf("unterminated string")
}

// array scans the elements of an array (after its '[').
func (s *scanner) array(t reflect.Type, depth int) error {
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == ']' {
		s.i++
		return nil
	}
	for n := 0; ; n++ {
		s.path = append(s.path, "["+strconv.Itoa(n)+"]")
		if err := s.value(elem, depth); err != nil {
			return err
		}
		s.path = s.path[:len(s.path)-1]
		s.ws()
		if s.i == len(s.data) {
			return s.errorf("unexpected end of the document")
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.errorf("unexpected character %q after an array element", s.data[s.i])
		}
	}
}

// object scans the members of an object of type t (after its '{').
func (s *scanner) object(t reflect.Type, depth int) error {
	var fields map[string]reflect.Type
	var elem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = fieldsOf(t)
		case reflect.Map:
			elem = t.Elem()
		}
	}
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return nil
	}
	var seen map[string]struct{}
	for {
		s.ws()
		if s.i == len(s.data) || s.data[s.i] != '"' {
			return s.errorf("want an object key")
		}
		raw, escaped, err := s.str()
		if err != nil {
			return err
		}
		key := string(raw)
		if escaped {
			// The key as encoding/json will read it: "\u0041" is "A",
			// and invalid UTF-8 becomes U+FFFD.
			if err := json.Unmarshal(s.data[s.i-len(raw)-2:s.i], &key); err != nil {
				return s.errorf("object key: %v", err)
			}
		}
		if _, dup := seen[key]; dup {
			return fmt.Errorf("invalid JSON: duplicated field %q at %s", key, s.where())
		}
		if seen == nil {
			seen = map[string]struct{}{}
		}
		seen[key] = struct{}{}
		vt := elem
		if fields != nil {
			ft, ok := fields[key]
			if !ok {
				return unknownField(key, s.where(), fields)
			}
			vt = ft
		}
		s.ws()
		if s.i == len(s.data) || s.data[s.i] != ':' {
			return s.errorf("want ':' after object key %q", key)
		}
		s.i++
		s.path = append(s.path, "."+key)
		if err := s.value(vt, depth); err != nil {
			return err
		}
		s.path = s.path[:len(s.path)-1]
		s.ws()
		if s.i == len(s.data) {
			return s.errorf("unexpected end of the document")
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errorf("unexpected character %q after an object member", s.data[s.i])
		}
	}
}

func unknownField(key, path string, fields map[string]reflect.Type) error {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Errorf("invalid JSON: unknown field %q at %s (field names are case-sensitive: %q)", key, path, name)
		}
	}
	return fmt.Errorf("invalid JSON: unknown field %q at %s", key, path)
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// fieldsOf returns the JSON names of a struct's fields and their types,
// as encoding/json resolves them (tags, promoted fields of embedded
// structs, the shallowest or only tagged field winning a conflict).
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	type cand struct {
		typ    reflect.Type
		depth  int
		tagged bool
		n      int // candidates at this depth with this name
		nTag   int // tagged ones among them
	}
	cands := map[string]*cand{}
	var walk func(t reflect.Type, depth int, visited map[reflect.Type]bool)
	walk = func(t reflect.Type, depth int, visited map[reflect.Type]bool) {
		if visited[t] {
			return
		}
		visited[t] = true
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := sf.Type
			if sf.Anonymous {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if !sf.IsExported() && et.Kind() != reflect.Struct {
					continue
				}
				if name == "" && et.Kind() == reflect.Struct {
					walk(et, depth+1, visited)
					continue
				}
			} else if !sf.IsExported() {
				continue
			}
			tagged := name != ""
			if !tagged {
				name = sf.Name
			}
			c := cands[name]
			switch {
			case c == nil || depth < c.depth:
				cands[name] = &cand{typ: ft, depth: depth, tagged: tagged, n: 1, nTag: b2i(tagged)}
			case depth == c.depth:
				c.n++
				c.nTag += b2i(tagged)
				if tagged && !c.tagged {
					c.typ, c.tagged = ft, true
				}
			}
		}
	}
	walk(t, 0, map[reflect.Type]bool{})
	fields := map[string]reflect.Type{}
	for name, c := range cands {
		// encoding/json drops a name it cannot resolve to one field.
		if c.n == 1 || c.nTag == 1 {
			fields[name] = c.typ
		}
	}
	fieldCache.Store(t, fields)
	return fields
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
