package mapping

import (
	"strings"
	"testing"

	"github.com/mqstreams/mqstreams/log"
)

func TestTopicTemplate(t *testing.T) {
	rec := &log.Record{Key: []byte("dev/1"), Headers: []log.Header{{Key: "site", Value: []byte("paris")}, {Key: "site", Value: []byte("lyon")}}}
	cases := []struct {
		tmpl, want, err string
	}{
		{tmpl: DefaultPublishTopic, want: "s/dev/1"},
		{tmpl: "to/{header.site}/{partition}/{key}", want: "to/paris/3/dev/1"},
		{tmpl: "fixed", want: "fixed"},
		{tmpl: "{header.none}/x", want: "/x"},
		{tmpl: "", err: "must not be empty"},
		{tmpl: "a/{key", err: "unclosed"},
		{tmpl: "a/{offset}", err: "unknown placeholder {offset}"},
		{tmpl: "a/{header.}", err: "unknown placeholder"},
		{tmpl: "a/+/{key}", err: "wildcards"},
	}
	for _, c := range cases {
		tt, err := ParseTopicTemplate(c.tmpl)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.tmpl, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.tmpl, err)
		}
		if got := tt.Render("s", 3, rec); got != c.want {
			t.Errorf("%q: got %q, want %q", c.tmpl, got, c.want)
		}
	}
}

func TestDefinitionDeliveryFields(t *testing.T) {
	var d Definition
	if err := d.UnmarshalJSON([]byte(`{"name":"a","filter":"a/#","publish_topic":"out/{key}","deliver_produced":false}`)); err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	back, err := DefinitionFromSpec(d.Spec())
	if err != nil {
		t.Fatal(err)
	}
	if back.PublishTopic != "out/{key}" || back.Delivers() {
		t.Fatalf("stored definition lost the delivery fields: %+v", back)
	}
	for _, bad := range []string{`"publish_topic":"a/{nope}"`, `"deliver_produced":"yes"`, `"publish_topic":7`} {
		if err := d.UnmarshalJSON([]byte(`{"name":"a","filter":"a/#",` + bad + `}`)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	var def Definition
	if err := def.UnmarshalJSON([]byte(`{"name":"a","filter":"a/#"}`)); err != nil || !def.Delivers() {
		t.Fatalf("deliver_produced defaults to true: %v %v", err, def.Delivers())
	}
}
