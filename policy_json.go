package grpcipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// The JSON form, shaped like gRPC's authorization policy.
type policyFile struct {
	Name       string     `json:"name"`
	DenyRules  []ruleFile `json:"deny_rules"`
	AllowRules []ruleFile `json:"allow_rules"`
}

type ruleFile struct {
	Name   string `json:"name"`
	Source *struct {
		Principals []json.RawMessage `json:"principals"`
	} `json:"source"`
	Request *struct {
		Paths   []string        `json:"paths"`
		Headers json.RawMessage `json:"headers"`
	} `json:"request"`
}

// LoadPolicy reads a policy file; see [ParsePolicy] for its form. Its error
// names the file: it could not be read ("grpcipc: reading the policy: open
// FILE: ..."), or it is not a policy ("grpcipc: policy file FILE: invalid
// policy: ...", wrapping [ErrPolicy] and saying where in the file).
func LoadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: reading the policy: %w", err)
	}
	p, err := parsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("grpcipc: policy file %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses a policy written in JSON the way gRPC's authorization
// policies are, with OS principals (see [ParsePrincipal]):
//
//	{
//	  "name": "greeter",
//	  "deny_rules": [
//	    {"name": "no-nobody", "source": {"principals": ["uid:65534"]}}
//	  ],
//	  "allow_rules": [
//	    {"name": "hello-for-all", "source": {"principals": ["*"]},
//	     "request": {"paths": ["/greet.Greeter/SayHello"]}},
//	    {"name": "admins", "source": {"principals": ["same-user", "group:wheel",
//	      {"all_of": ["uid:0", "exe:/usr/bin/myctl"]}]}}
//	  ]
//	}
//
// A rule without "source" matches every caller, one without "request" every
// method. A principal is a string, or an object {"all_of": [...]} or
// {"any_of": [...]}. Header matching ("headers") is not supported. Keys are
// exactly the lower-case ones above, each at most once per object, and no
// value may be null. The error for a bad file wraps [ErrPolicy] and names
// the field and the problem: "grpcipc: invalid policy: name: missing or
// empty".
func ParsePolicy(data []byte) (*Policy, error) {
	return withPrefix(parsePolicy(data))
}

// parsePolicy is ParsePolicy; its error is ErrPolicy's, without
// "grpcipc: ".
func parsePolicy(data []byte) (*Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f policyFile
	if err := dec.Decode(&f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := lineCol(data, se.Offset)
			return nil, fmt.Errorf("%w: line %d, column %d: %v", ErrPolicy, line, col, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrPolicy, strings.TrimPrefix(err.Error(), "json: "))
	}
	if rest := bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		if dec.More() {
			return nil, fmt.Errorf("%w: more than one JSON value", ErrPolicy)
		}
		line, col := lineCol(data, int64(len(data)-len(rest)+1))
		return nil, fmt.Errorf("%w: line %d, column %d: invalid character %q after the policy", ErrPolicy, line, col, rest[0])
	}
	// What decoded may still hold what encoding/json lets through: nulls,
	// keys in another case, keys given twice.
	if err := checkStrictJSON(data); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrPolicy, err)
	}
	if f.Name == "" {
		return nil, fmt.Errorf("%w: name: missing or empty", ErrPolicy)
	}
	if len(f.AllowRules) == 0 {
		return nil, fmt.Errorf("%w: allow_rules: missing or empty, so no one could call", ErrPolicy)
	}
	deny, err := parseRules("deny_rules", f.DenyRules)
	if err != nil {
		return nil, err
	}
	allow, err := parseRules("allow_rules", f.AllowRules)
	if err != nil {
		return nil, err
	}
	return newPolicy(f.Name, deny, allow)
}

func parseRules(field string, rules []ruleFile) ([]Rule, error) {
	out := make([]Rule, 0, len(rules))
	for i, rf := range rules {
		at := fmt.Sprintf("%s[%d]", field, i)
		r := Rule{Name: rf.Name}
		if rf.Source != nil {
			if len(rf.Source.Principals) == 0 {
				return nil, fmt.Errorf("%w: %s.source.principals: empty (leave out \"source\" to match every caller)", ErrPolicy, at)
			}
			for j, raw := range rf.Source.Principals {
				p, err := parsePrincipalJSON(raw, 0)
				if err != nil {
					return nil, fmt.Errorf("%w: %s.source.principals[%d]: %s", ErrPolicy, at, j, err)
				}
				r.Principals = append(r.Principals, p)
			}
		}
		if rf.Request != nil {
			if len(rf.Request.Headers) > 0 {
				return nil, fmt.Errorf("%w: %s.request.headers: header matching is not supported (grpcipc matches OS principals)", ErrPolicy, at)
			}
			if len(rf.Request.Paths) == 0 {
				return nil, fmt.Errorf("%w: %s.request.paths: empty (leave out \"request\" to match every method)", ErrPolicy, at)
			}
			r.Methods = rf.Request.Paths
		}
		out = append(out, r)
	}
	return out, nil
}

func parsePrincipalJSON(raw json.RawMessage, depth int) (Principal, error) {
	if depth > 8 {
		return Principal{}, errors.New("all_of/any_of nested too deep")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		p, err := parsePrincipal(s)
		if err != nil {
			return Principal{}, fmt.Errorf("%q: %s", s, err)
		}
		return p, nil
	}
	var obj map[string][]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || len(obj) != 1 {
		return Principal{}, errors.New(`want a string or one of {"all_of": [...]}, {"any_of": [...]}`)
	}
	var op string
	var list []json.RawMessage
	for k, v := range obj { // its only entry
		op, list = k, v
	}
	if op != "all_of" && op != "any_of" {
		return Principal{}, fmt.Errorf("unknown operator %q (want all_of or any_of)", op)
	}
	if len(list) == 0 {
		return Principal{}, fmt.Errorf("%s: empty", op)
	}
	var subs []Principal
	for i, r := range list {
		p, err := parsePrincipalJSON(r, depth+1)
		if err != nil {
			return Principal{}, fmt.Errorf("%s[%d]: %s", op, i, err)
		}
		subs = append(subs, p)
	}
	if op == "all_of" {
		return AllOf(subs...), nil
	}
	return AnyOf(subs...), nil
}

// jsonShape is what the strict walk of a policy file expects of a value.
type jsonShape uint8

const (
	shapeSkip       jsonShape = iota // not checked here: a later step judges it
	shapePolicy                      // the top-level object
	shapeRules                       // deny_rules, allow_rules
	shapeRule                        // one rule
	shapeSource                      // a rule's source
	shapeRequest                     // a rule's request
	shapePrincipals                  // principals, all_of, any_of
	shapePrincipal                   // a string or {"all_of"|"any_of": [...]}
	shapeStrings                     // paths
	shapeScalar                      // name, one path
	shapeHeaders                     // request.headers: refused later, if not null
)

// jsonFields are the keys each object of a policy file may have, and what
// their values are.
var jsonFields = map[jsonShape]map[string]jsonShape{
	shapePolicy:    {"name": shapeScalar, "deny_rules": shapeRules, "allow_rules": shapeRules},
	shapeRule:      {"name": shapeScalar, "source": shapeSource, "request": shapeRequest},
	shapeSource:    {"principals": shapePrincipals},
	shapeRequest:   {"paths": shapeStrings, "headers": shapeHeaders},
	shapePrincipal: {"all_of": shapePrincipals, "any_of": shapePrincipals},
}

// checkStrictJSON walks the tokens of a policy file that decoded, refusing
// what encoding/json accepts but a policy must not hold: a null (so that
// "source": null cannot pass for a left-out source), a key that is not
// exactly a documented one (json matches field names case-insensitively),
// and a key given twice in one object (json keeps the last). Its errors
// name the field. Values of the wrong type are left to the decode and to
// parseRules, which say what they want.
func checkStrictJSON(data []byte) error {
	w := strictWalk{dec: json.NewDecoder(bytes.NewReader(data))}
	return w.value("", shapePolicy)
}

type strictWalk struct{ dec *json.Decoder }

// value checks the next value, of shape s, at the field at.
func (w strictWalk) value(at string, s jsonShape) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	if s == shapeSkip {
		return w.skipRest(tok)
	}
	switch tok {
	case nil:
		return nullError(at)
	case json.Delim('{'):
		fields := jsonFields[s]
		if fields == nil {
			return w.skipRest(tok)
		}
		return w.object(at, s, fields)
	case json.Delim('['):
		var elem jsonShape
		switch s {
		case shapeRules:
			elem = shapeRule
		case shapePrincipals:
			elem = shapePrincipal
		case shapeStrings:
			elem = shapeScalar
		default:
			return w.skipRest(tok)
		}
		for i := 0; w.dec.More(); i++ {
			if err := w.value(fmt.Sprintf("%s[%d]", at, i), elem); err != nil {
				return err
			}
		}
		_, err := w.dec.Token() // ']'
		return err
	}
	return nil // a string, number or bool
}

// object checks the members of an object, its '{' read.
func (w strictWalk) object(at string, s jsonShape, fields map[string]jsonShape) error {
	seen := make(map[string]bool, len(fields))
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		field := key
		if at != "" {
			field = at + "." + key
		}
		if seen[key] {
			return fmt.Errorf("%s: duplicate key (each key may appear once)", field)
		}
		seen[key] = true
		child, ok := fields[key]
		if !ok && s != shapePrincipal { // an unknown operator is parsePrincipalJSON's to name
			return unknownKeyError(at, key, fields)
		}
		if err := w.value(field, child); err != nil {
			return err
		}
	}
	_, err := w.dec.Token() // '}'
	return err
}

// skipRest reads the rest of a value whose first token was tok.
func (w strictWalk) skipRest(tok json.Token) error {
	if tok != json.Delim('{') && tok != json.Delim('[') {
		return nil
	}
	for depth := 1; depth > 0; {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

func nullError(at string) error {
	if at == "" {
		return errors.New(`null is not a policy (want an object with "name" and "allow_rules")`)
	}
	hint := ""
	switch at[strings.LastIndexByte(at, '.')+1:] {
	case "source":
		hint = ` (leave out "source" to match every caller)`
	case "request":
		hint = ` (leave out "request" to match every method)`
	case "deny_rules":
		hint = ` (leave out "deny_rules" for none)`
	}
	return fmt.Errorf("%s: null is not allowed%s", at, hint)
}

func unknownKeyError(at, key string, fields map[string]jsonShape) error {
	prefix := ""
	if at != "" {
		prefix = at + ": "
	}
	for k := range fields {
		if strings.EqualFold(k, key) {
			return fmt.Errorf("%sunknown field %q (keys are case-sensitive: want %q)", prefix, key, k)
		}
	}
	return fmt.Errorf("%sunknown field %q", prefix, key)
}

// lineCol turns the offset json reports (just past the offending byte)
// into the 1-based line and column of that byte.
func lineCol(data []byte, offset int64) (line, col int) {
	i := int(offset) - 1
	if i < 0 {
		i = 0
	}
	if i > len(data) {
		i = len(data)
	}
	before := data[:i]
	return bytes.Count(before, []byte("\n")) + 1, i - bytes.LastIndexByte(before, '\n')
}
