package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
)

// streamsCmd is "mqstreams streams ...": stream management through a running server's
// HTTP API (EMQX's message stream paths).
type streamsCmd struct {
	List     streamsListCmd     `cmd:"" help:"List streams."`
	Describe streamsDescribeCmd `cmd:"" help:"Show one stream's definition and per-shard stats."`
	Create   streamsCreateCmd   `cmd:"" help:"Create a stream; it takes publishes at once."`
	Alter    streamsAlterCmd    `cmd:"" help:"Change the fields given; shards can only grow."`
	Delete   streamsDeleteCmd   `cmd:"" help:"Delete a stream with its data and committed offsets."`
}

const streamsPath = "/api/v5/message_streams/streams"

// streamJSON is a stream as the API answers it (the fields the CLI shows).
type streamJSON struct {
	Name      string   `json:"name"`
	Filters   []string `json:"filters"`
	Shards    int32    `json:"shards"`
	Key       string   `json:"key"`
	LastValue bool     `json:"last_value"`
	Retention struct {
		MaxAge      string `json:"max_age"`
		MaxBytes    int64  `json:"max_bytes"`
		MaxMessages int64  `json:"max_messages"`
	} `json:"retention"`
}

type streamsListCmd struct{ apiTarget }

// Run lists the streams.
func (c streamsListCmd) Run(e env) error {
	var resp struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := c.call(http.MethodGet, streamsPath, nil, &resp); err != nil {
		return err
	}
	if c.Output == "json" {
		return printJSON(e, resp.Data)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFILTERS\tSHARDS\tKEY\tLAST_VALUE\tMAX_AGE\tMAX_BYTES\tMAX_MESSAGES")
	for _, raw := range resp.Data {
		var s streamJSON
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%v\t%s\t%s\t%s\n", s.Name, strings.Join(s.Filters, ","), s.Shards, s.Key, s.LastValue,
			s.Retention.MaxAge, limitText(s.Retention.MaxBytes), limitText(s.Retention.MaxMessages))
	}
	return tw.Flush()
}

func limitText(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func printJSON(e env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type streamsDescribeCmd struct {
	apiTarget
	Name string `arg:"" help:"Stream name."`
}

// Run shows the definition and the stats of one stream.
func (c streamsDescribeCmd) Run(e env) error {
	var def json.RawMessage
	if err := c.call(http.MethodGet, streamsPath+"/"+url.PathEscape(c.Name), nil, &def); err != nil {
		return err
	}
	var stats struct {
		Shards []shardStats `json:"shards"`
	}
	if err := c.call(http.MethodGet, "/api/v1/streams/"+url.PathEscape(c.Name)+"/stats", nil, &stats); err != nil {
		return err
	}
	if c.Output == "json" {
		return printJSON(e, map[string]any{"definition": def, "shards": stats.Shards})
	}
	var s streamJSON
	if err := json.Unmarshal(def, &s); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "name:        %s\nfilters:     %s\nshards:      %d\nkey:         %s\nlast_value:  %v\nmax_age:     %s\nmax_bytes:   %s\nmax_msgs:    %s\n\n",
		s.Name, strings.Join(s.Filters, ","), s.Shards, s.Key, s.LastValue, s.Retention.MaxAge, limitText(s.Retention.MaxBytes), limitText(s.Retention.MaxMessages))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tLOG_START\tHIGH_WATERMARK\tRECORDS\tBYTES\tOLDEST_US\tNEWEST_US")
	for _, sh := range stats.Shards {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\t%s\n", sh.Shard, sh.LogStart, sh.HighWatermark, sh.Records, sh.Bytes, usText(sh.OldestUS), usText(sh.NewestUS))
	}
	return tw.Flush()
}

func usText(p *int64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

// streamFlags are the definition fields the create and alter commands set; a nil
// field is not sent (alter keeps its value, create takes the default).
type streamFlags struct {
	Filter      []string `help:"MQTT topic filter feeding the stream (repeatable)." placeholder:"FILTER"`
	Shards      *int32   `help:"Number of shards (Kafka partitions); alter can only grow it."`
	Key         *string  `help:"Key expression: clientid, topic, topic-level:N, user-property:NAME, json:PATH, none, ..."`
	LastValue   *bool    `name:"last-value" help:"Keep only the newest record per key."`
	MaxAge      *string  `help:"Retention by age, e.g. 72h, 7d, infinity."`
	MaxBytes    *string  `help:"Retention by bytes per shard, e.g. 10GiB, infinity."`
	MaxMessages *string  `help:"Retention by records per shard, or infinity."`
	Compression *string  `help:"Compression of stored batches once merged: none, lz4 or zstd."`
}

func (f streamFlags) body(name string) map[string]any {
	b := map[string]any{}
	if name != "" {
		b["name"] = name
	}
	if len(f.Filter) > 0 {
		b["filters"] = f.Filter
	}
	if f.Shards != nil {
		b["shards"] = *f.Shards
	}
	if f.Key != nil {
		b["key"] = *f.Key
	}
	if f.LastValue != nil {
		b["last_value"] = *f.LastValue
	}
	if f.Compression != nil {
		b["compression"] = *f.Compression
	}
	ret := map[string]any{}
	if f.MaxAge != nil {
		ret["max_age"] = *f.MaxAge
	}
	if f.MaxBytes != nil {
		ret["max_bytes"] = *f.MaxBytes
	}
	if f.MaxMessages != nil {
		ret["max_messages"] = *f.MaxMessages
	}
	if len(ret) > 0 {
		b["retention"] = ret
	}
	return b
}

type streamsCreateCmd struct {
	apiTarget
	Name string `arg:"" help:"Stream name (letters, digits, - . _; starting with a letter or digit)."`
	streamFlags
}

// Run creates the stream.
func (c streamsCreateCmd) Run(e env) error {
	return c.change(e, http.MethodPost, streamsPath, c.body(c.Name), "stream "+c.Name+" created")
}

// change sends a create or alter and prints the stream the server answers with (-o
// json) or one line saying what was done.
func (t apiTarget) change(e env, method, path string, body any, done string) error {
	var out json.RawMessage
	if err := t.call(method, path, body, &out); err != nil {
		return err
	}
	if t.Output == "json" {
		return printJSON(e, out)
	}
	fmt.Fprintln(e.stderr, done)
	return nil
}

type streamsAlterCmd struct {
	apiTarget
	Name string `arg:"" help:"Stream name."`
	streamFlags
}

// Run changes the fields given.
func (c streamsAlterCmd) Run(e env) error {
	b := c.body("")
	if len(b) == 0 {
		return fmt.Errorf("nothing to change: give at least one of --filter, --shards, --key, --last-value, --max-age, --max-bytes, --max-messages")
	}
	return c.change(e, http.MethodPut, streamsPath+"/"+url.PathEscape(c.Name), b, "stream "+c.Name+" altered")
}

type streamsDeleteCmd struct {
	apiTarget
	Name string `arg:"" help:"Stream name."`
}

// Run deletes the stream.
func (c streamsDeleteCmd) Run(e env) error {
	if err := c.call(http.MethodDelete, streamsPath+"/"+url.PathEscape(c.Name), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "stream %s deleted\n", c.Name)
	return nil
}
