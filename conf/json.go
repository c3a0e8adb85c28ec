package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// DecodeJSON decodes a JSON object into v, a pointer to a struct, as strictly as
// Decode does YAML: a key the struct's json tags do not name, or a key given twice, is
// an error, and every error is a *FieldError naming the key path ("limits.max_shard_message_bytes").
// Values are decoded by encoding/json, so types keep their own UnmarshalJSON; nested
// tagged structs are walked the same way. Validators are not called.
func DecodeJSON(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("conf: DecodeJSON needs a non-nil pointer")
	}
	return decodeJSON(data, rv.Elem())
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

func decodeJSON(data []byte, v reflect.Value) error {
	data = bytes.TrimSpace(data)
	if string(data) == "null" {
		v.SetZero() // as encoding/json: null leaves the default (nil for pointers)
		return nil
	}
	switch {
	case v.Kind() == reflect.Pointer && !v.Type().Implements(jsonUnmarshaler):
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return decodeJSON(data, v.Elem())
	case v.Kind() == reflect.Struct && !reflect.PointerTo(v.Type()).Implements(jsonUnmarshaler):
		return decodeObject(data, v)
	case v.Kind() == reflect.Slice && isTaggedStruct(v.Type().Elem()):
		var items []json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			return typeError(data, v.Type(), err)
		}
		out := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, raw := range items {
			if err := decodeJSON(raw, out.Index(i)); err != nil {
				return Field(fmt.Sprintf("[%d]", i), err)
			}
		}
		v.Set(out)
		return nil
	}
	if err := json.Unmarshal(data, v.Addr().Interface()); err != nil {
		return typeError(data, v.Type(), err)
	}
	return nil
}

func isTaggedStruct(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(jsonUnmarshaler)
}

func decodeObject(data []byte, v reflect.Value) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil {
		return err
	} else if t != json.Delim('{') {
		return fmt.Errorf("expected an object, got %s", short(data))
	}
	fields := jsonFields(v.Type())
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Field(key, err)
		}
		i, ok := fields[key]
		if !ok {
			known := make([]string, 0, len(fields))
			for k := range fields {
				known = append(known, k)
			}
			slices.Sort(known)
			return Fieldf(key, "unknown field (known: %s)", strings.Join(known, ", "))
		}
		if seen[key] {
			return Fieldf(key, "given twice")
		}
		seen[key] = true
		if err := decodeJSON(raw, v.Field(i)); err != nil {
			return Field(key, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	return nil
}

// jsonFields maps a struct's JSON keys to field indexes, as encoding/json names them.
func jsonFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		m[name] = i
	}
	return m
}

// typeError words encoding/json's complaint about a value as "expected ..., got ...";
// an error a type's UnmarshalJSON returned is its own wording, kept.
func typeError(data []byte, t reflect.Type, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field == "" {
		return fmt.Errorf("expected %s, got %s", want(t), short(data))
	}
	if errors.As(err, &te) {
		return Fieldf(te.Field, "expected %s, got %s", want(te.Type), te.Value)
	}
	return err
}

func short(data []byte) string {
	s := string(bytes.TrimSpace(data))
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}
