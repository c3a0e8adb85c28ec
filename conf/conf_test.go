package conf

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// level is a value type with its own syntax, as sizes and durations are.
type level int

func (l *level) UnmarshalYAML(n *yaml.Node) error {
	s, err := Scalar(n, "low or high")
	if err != nil {
		return err
	}
	switch s {
	case "low":
		*l = 1
	case "high":
		*l = 2
	default:
		return Invalid(n, errors.New("expected low or high, got "+s))
	}
	return nil
}

type inner struct {
	Name  string `yaml:"name"`
	Level level  `yaml:"level"`
	Count int    `yaml:"count"`
}

func (i *inner) Validate() error {
	if i.Count < 0 {
		return Fieldf("count", "must not be negative")
	}
	return nil
}

type outer struct {
	Title string  `yaml:"title"`
	On    bool    `yaml:"on"`
	Items []inner `yaml:"items"`
	Sub   *inner  `yaml:"sub"`
}

func (o *outer) Validate() error {
	if o.Title == "bad" {
		return errors.New("title is bad")
	}
	return nil
}

func TestDecodeErrors(t *testing.T) {
	items := "items:\n  - name: a\n    level: low\n  - name: b\n"
	tests := []struct{ name, src, want string }{
		{"unknown top", "titel: x\n", "f.yaml:1: titel: unknown field (known: items, on, sub, title)"},
		{"unknown nested", items + "    colour: red\n", `f.yaml:5: items[1].colour: unknown field (known: count, level, name) (in "b")`},
		{"unknown via pointer", "sub:\n  x: 1\n", "f.yaml:2: sub.x: unknown field (known: count, level, name)"},
		{"own type refuses", items + "    level: medium\n", `f.yaml:5: items[1].level: expected low or high, got medium (in "b")`},
		{"own type wants scalar", "sub: {level: [a]}\n", "f.yaml:1: sub.level: expected low or high, got a list"},
		{"wrong type", "on: maybe\n", `f.yaml:1: on: expected true or false, got "maybe"`},
		{"wrong kind", "items: {a: 1}\n", "f.yaml:1: items: expected a list, got a mapping"},
		{"fraction into int", "sub: {count: 2.5}\n", `f.yaml:1: sub.count: expected a whole number, got "2.5"`},
		{"empty number", "sub:\n  count:\n", "f.yaml:2: sub.count: expected a whole number, got nothing"},
		{"empty bool", "on:\n", "f.yaml:1: on: expected true or false, got nothing"},
		{"validate nested", items + "    count: -1\n", `f.yaml:5: items[1].count: must not be negative (in "b")`},
		{"validate missing key", "sub: {name: z}\n", ""},
		{"validate top", "title: bad\n", "f.yaml:1: title is bad"},
		{"duplicate", "title: a\ntitle: b\n", "f.yaml:2: title: duplicate key (first at line 1)"},
		{"duplicate same line", "sub: {name: a, name: b}\n", "f.yaml:1: sub.name: duplicate key (first at line 1)"},
		{"syntax", "title: [a\n", "f.yaml:1: did not find expected ',' or ']'"},
		{"two documents", "title: a\n---\ntitle: b\n", "f.yaml:2: more than one YAML document"},
		{"merge key", "base: &b {name: m, level: low}\n", "f.yaml:1: base: unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v outer
			err := Decode("f.yaml", []byte(tt.src), &v)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("got  %v\nwant %s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not *Error", err)
			}
		})
	}
}

func TestDecodeKeepsDefaultsAndMerges(t *testing.T) {
	v := outer{Title: "default", On: true}
	if err := Decode("", []byte("sub:\nitems:\n"), &v); err != nil || v.Title != "default" || !v.On {
		t.Fatalf("defaults: %+v %v", v, err)
	}
	if err := Decode("", nil, &v); err != nil || v.Title != "default" {
		t.Fatalf("empty: %+v %v", v, err)
	}
	type doc struct {
		Defaults inner   `yaml:"defaults"`
		Items    []inner `yaml:"items"`
	}
	var d doc
	src := "defaults: &d {level: high, count: 2}\nitems:\n  - <<: *d\n    name: x\n  - <<: *d\n    name: y\n    count: -4\n"
	err := Decode("m.yaml", []byte(src), &d)
	if err == nil || err.Error() != `m.yaml:7: items[1].count: must not be negative (in "y")` {
		t.Fatalf("merged: %v", err)
	}
	if d.Items[0].Level != 2 || d.Items[0].Count != 2 || d.Items[0].Name != "x" {
		t.Fatalf("merge not applied: %+v", d.Items[0])
	}
}

// TestYAMLv3Messages pins the yaml.v3 message forms yamlv3.go reads: if an upgrade
// changes them, this fails before the config errors lose their key paths.
func TestYAMLv3Messages(t *testing.T) {
	for src, re := range map[string]interface{ MatchString(string) bool }{
		"titel: 1\n":           unknownRe,
		"title: a\ntitle: b\n": dupRe,
		"on: 3\n":              typeRe,
		"items: 3\n":           typeRe,
	} {
		var v outer
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		err := dec.Decode(&v)
		var te *yaml.TypeError
		if !errors.As(err, &te) || len(te.Errors) == 0 {
			t.Fatalf("%q: %v is not a TypeError", src, err)
		}
		m := lineRe.FindStringSubmatch(te.Errors[0])
		if m == nil || !re.MatchString(m[2]) {
			t.Errorf("%q: yaml.v3 now says %q", src, te.Errors[0])
		}
	}
	if err := yaml.Unmarshal([]byte("a: [b\n"), new(any)); err == nil || lineRe.FindStringSubmatch(err.Error()) == nil {
		t.Errorf("syntax error form changed: %v", err)
	}
}

type jsonDoc struct {
	Name  string   `json:"name"`
	Count *int64   `json:"count"`
	Tags  []string `json:"tags"`
	Sub   *struct {
		Max int `json:"max"`
	} `json:"sub"`
	List []struct {
		On bool `json:"on"`
	} `json:"list"`
}

func TestDecodeJSON(t *testing.T) {
	var d jsonDoc
	if err := DecodeJSON([]byte(`{"name":"n","count":3,"sub":{"max":2},"list":[{"on":true}],"tags":null}`), &d); err != nil {
		t.Fatal(err)
	}
	if d.Name != "n" || *d.Count != 3 || d.Sub.Max != 2 || !d.List[0].On {
		t.Fatalf("got %+v", d)
	}
	for _, tt := range []struct{ src, want string }{
		{`{"nam":"n"}`, "nam: unknown field (known: count, list, name, sub, tags)"},
		{`{"sub":{"min":1}}`, "sub.min: unknown field (known: max)"},
		{`{"list":[{"on":true},{"off":1}]}`, "list[1].off: unknown field (known: on)"},
		{`{"list":[{"on":"yes"}]}`, `list[0].on: expected true or false, got "yes"`},
		{`{"count":"3"}`, `count: expected a whole number, got "3"`},
		{`{"count":1.5}`, `count: expected a whole number, got 1.5`},
		{`{"tags":"a"}`, `tags: expected a list, got "a"`},
		{`{"sub":[]}`, `sub: expected an object, got []`},
		{`{"name":"a","name":"b"}`, `name: given twice`},
		{`[1]`, `expected an object, got [1]`},
	} {
		var d jsonDoc
		err := DecodeJSON([]byte(tt.src), &d)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: got %v, want %s", tt.src, err, tt.want)
		}
	}
}

// aliased decodes through another struct with yaml.v3's older unmarshal-function form,
// as mapping.Definition does to accept aliases.
type aliased struct{ N int }

func (a *aliased) UnmarshalYAML(unmarshal func(any) error) error {
	var doc struct {
		N     *int `yaml:"n"`
		Alias *int `yaml:"alias"`
	}
	if err := unmarshal(&doc); err != nil {
		return err
	}
	if doc.N != nil {
		a.N = *doc.N
	} else if doc.Alias != nil {
		a.N = *doc.Alias
	}
	return nil
}

// TestStrictInsideUnmarshaler pins that KnownFields reaches inside a type decoding
// through the older UnmarshalYAML form, and that a custom error keeps its place.
func TestStrictInsideUnmarshaler(t *testing.T) {
	var v struct {
		Items []aliased `yaml:"items"`
		Sub   inner     `yaml:"sub"`
	}
	if err := Decode("a.yaml", []byte("items:\n  - n: 1\n  - alias: 2\n"), &v); err != nil || v.Items[1].N != 2 {
		t.Fatalf("%+v %v", v, err)
	}
	err := Decode("a.yaml", []byte("items:\n  - n: 1\n  - nn: 2\n"), &v)
	if err == nil || !strings.HasPrefix(err.Error(), "a.yaml:3: items[1].nn: unknown field") {
		t.Fatalf("strictness lost inside the unmarshaler: %v", err)
	}
	err = Decode("a.yaml", []byte("sub:\n  level: x\n"), &v)
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || e.Path != "sub.level" || e.Err.Error() != "expected low or high, got x" {
		t.Fatalf("custom error lost its place: %#v", err)
	}
}
