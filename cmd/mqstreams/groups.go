package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/mqstreams/mqstreams/kafkawire"
)

// groupsCmd is "mqstreams groups ...": consumer groups of a running server through its
// HTTP API.
type groupsCmd struct {
	List         groupsListCmd     `cmd:"" help:"List groups with committed offsets and their lag."`
	Describe     groupsDescribeCmd `cmd:"" help:"Show a group's state, members and positions."`
	Delete       groupsDeleteCmd   `cmd:"" help:"Delete a group without members, with its committed offsets."`
	ResetOffsets groupsResetCmd    `cmd:"" name:"reset-offsets" help:"Move a group's offsets (its consumers must be stopped)."`
}

type groupsListCmd struct{ apiTarget }

// Run lists the groups.
func (c groupsListCmd) Run(e env) error {
	var resp struct {
		Data []struct {
			Group    string `json:"group"`
			TotalLag int64  `json:"total_lag"`
			Parts    []struct {
				Topic string `json:"topic"`
			} `json:"partitions"`
		} `json:"data"`
	}
	if err := c.call(http.MethodGet, "/api/v1/groups", nil, &resp); err != nil {
		return err
	}
	if c.Output == "json" {
		return printJSON(e, resp.Data)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tPARTITIONS\tTOTAL_LAG")
	for _, g := range resp.Data {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", g.Group, len(g.Parts), g.TotalLag)
	}
	return tw.Flush()
}

type groupsDescribeCmd struct {
	apiTarget
	Group string `arg:"" help:"Group id."`
}

// Run describes the group.
func (c groupsDescribeCmd) Run(e env) error {
	var d kafkawire.GroupDescription
	if err := c.call(http.MethodGet, "/api/v1/groups/"+url.PathEscape(c.Group), nil, &d); err != nil {
		return err
	}
	if c.Output == "json" {
		return printJSON(e, d)
	}
	fmt.Fprintf(e.stdout, "group: %s\nstate: %s\nprotocol: %s\nmembers: %d\n\n", d.Group, d.State, d.Protocol, len(d.Members))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if len(d.Members) > 0 {
		fmt.Fprintln(tw, "MEMBER\tCLIENT_ID\tHOST")
		for _, m := range d.Members {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.MemberID, m.ClientID, m.ClientHost)
		}
		fmt.Fprintln(tw)
	}
	printOffsets(tw, d.Offsets)
	return tw.Flush()
}

func printOffsets(tw *tabwriter.Writer, offs []kafkawire.GroupLag) {
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tHIGH_WATERMARK\tLAG")
	for _, o := range offs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", o.Topic, o.Partition, o.Committed, o.HWM, o.Lag)
	}
}

type groupsDeleteCmd struct {
	apiTarget
	Group string `arg:"" help:"Group id."`
}

// Run deletes the group.
func (c groupsDeleteCmd) Run(e env) error {
	if err := c.call(http.MethodDelete, "/api/v1/groups/"+url.PathEscape(c.Group), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "group %s deleted\n", c.Group)
	return nil
}

type groupsResetCmd struct {
	apiTarget
	Group      string `arg:"" help:"Group id."`
	Topic      string `help:"Topic to reset (default: every topic the group has offsets in)."`
	ToEarliest bool   `name:"to-earliest" help:"Move to each partition's log start." xor:"to" required:""`
	ToLatest   bool   `name:"to-latest" help:"Move to each partition's end." xor:"to" required:""`
	ToDatetime string `name:"to-datetime" help:"Move to the first record at or after this RFC 3339 time." placeholder:"TIME" xor:"to" required:""`
	DryRun     bool   `name:"dry-run" help:"Show the new positions without committing them."`
}

// Run resets the offsets.
func (c groupsResetCmd) Run(e env) error {
	body := resetRequest{Topic: c.Topic, DryRun: c.DryRun}
	switch {
	case c.ToEarliest:
		body.To = "earliest"
	case c.ToLatest:
		body.To = "latest"
	case c.ToDatetime != "":
		body.To, body.Datetime = "datetime", c.ToDatetime
	default:
		return errors.New("give one of --to-earliest, --to-latest, --to-datetime")
	}
	var resp struct {
		Offsets []kafkawire.GroupLag `json:"offsets"`
	}
	if err := c.call(http.MethodPost, "/api/v1/groups/"+url.PathEscape(c.Group)+"/reset-offsets", body, &resp); err != nil {
		return err
	}
	if c.Output == "json" {
		return printJSON(e, resp.Offsets)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	printOffsets(tw, resp.Offsets)
	if err := tw.Flush(); err != nil {
		return err
	}
	if c.DryRun {
		fmt.Fprintln(e.stderr, "dry run: nothing committed")
	}
	return nil
}
