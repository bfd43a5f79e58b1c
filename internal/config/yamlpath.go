package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// keyError is one of yaml.v3's type errors and the key path it is about.
type keyError struct{ path, msg string }

// withKeyPaths rewrites yaml.v3's type errors ("line 3: cannot unmarshal
// !!str `abc` into int64") to name the key they are about
// ("rules.cancel_rate_spike.min_cancels: line 3: ..."), one error per
// problem, the way validation reports. yaml.v3 gives only the line, and a
// flow mapping puts many keys on one line, so the line alone cannot say
// which key: instead the node tree is walked beside the Go type it decodes
// into, each leaf decoded on its own, and every message matched to the
// first leaf (in document order, as yaml.v3 reports) that produced it. A
// message no leaf produced keeps its text without a path.
func withKeyPaths(data []byte, te *yaml.TypeError) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return te // the strict pass read the same bytes; cannot happen
	}
	var found []keyError
	keyErrors(&doc, reflect.TypeFor[Config](), "", &found)
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		path := ""
		if i := slices.IndexFunc(found, func(f keyError) bool { return f.msg == msg }); i >= 0 {
			path = found[i].path
			found = slices.Delete(found, i, i+1)
		}
		if path == "" {
			errs = append(errs, errors.New(msg))
		} else {
			errs = append(errs, fmt.Errorf("%s: %s", path, msg))
		}
	}
	return errors.Join(errs...)
}

// keyErrors appends the type errors that decoding n into a t reports, each
// with its key path, recursing as yaml.v3 does into mappings, structs and
// sequences, so that a leaf is decoded on its own and its errors are its
// own.
func keyErrors(n *yaml.Node, t reflect.Type, path string, out *[]keyError) {
	switch {
	case n.Kind == yaml.DocumentNode:
		for _, c := range n.Content {
			keyErrors(c, t, path, out)
		}
		return
	case n.Kind == yaml.AliasNode:
		keyErrors(n.Alias, t, path, out)
		return
	case isNull(n):
		return // yaml.v3 leaves the value alone
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	custom := reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]())
	if !custom && n.Kind == yaml.MappingNode && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map) && duplicateKeys(n, path, out) {
		return // yaml.v3 decodes nothing of a mapping with a repeated key
	}
	switch {
	case !custom && t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				keyErrorsMerged(v, t, path, out)
				continue
			}
			p := joinKey(path, k.Value)
			if ft, ok := fields[k.Value]; ok {
				keyErrors(v, ft, p, out)
			} else {
				*out = append(*out, keyError{p, fmt.Sprintf("line %d: field %s not found in type %s", k.Line, k.Value, t)})
			}
		}
	case !custom && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			keyErrors(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case !custom && t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinKey(path, n.Content[i].Value)
			keyErrors(n.Content[i], t.Key(), p, out)
			keyErrors(n.Content[i+1], t.Elem(), p, out)
		}
	default:
		err := n.Decode(reflect.New(t).Interface())
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, msg := range te.Errors {
				*out = append(*out, keyError{path, msg})
			}
		}
	}
}

// duplicateKeys reports every repeated key of mapping n as yaml.v3 does.
func duplicateKeys(n *yaml.Node, path string, out *[]keyError) bool {
	found := false
	for i := 0; i < len(n.Content); i += 2 {
		for j := i + 2; j < len(n.Content); j += 2 {
			ki, kj := n.Content[i], n.Content[j]
			if ki.Kind == kj.Kind && ki.Value == kj.Value {
				*out = append(*out, keyError{joinKey(path, kj.Value), fmt.Sprintf("line %d: mapping key %#v already defined at line %d", kj.Line, kj.Value, ki.Line)})
				found = true
			}
		}
	}
	return found
}

// keyErrorsMerged walks the value of a "<<" merge key: a mapping, or a
// sequence of them, merged into the struct at path.
func keyErrorsMerged(v *yaml.Node, t reflect.Type, path string, out *[]keyError) {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, c := range v.Content {
			keyErrors(c, t, path, out)
		}
		return
	}
	keyErrors(v, t, path, out)
}

// yamlFields maps the YAML keys of struct t to their field types, named as
// yaml.v3 names them: the tag's name, else the lowercased field name.
// riskwatch's config uses no inline fields.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
