package kafkawire

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mqstreams/mqstreams/log"
)

// Group administration for the HTTP API and the groups CLI: the same coordinator state
// DescribeGroups and DeleteGroups answer from, plus offset resets as Kafka's
// kafka-consumer-groups --reset-offsets does them (only while the group has no members).

// Errors of the group administration calls.
var (
	ErrGroupNotFound = errors.New("group not found")
	ErrGroupNotEmpty = errors.New("group has active members")
	ErrBadReset      = errors.New("invalid offset reset")
)

// GroupMember is one member of a group as GroupDescription lists it.
type GroupMember struct {
	MemberID   string  `json:"member_id"`
	InstanceID *string `json:"instance_id,omitempty"`
	ClientID   string  `json:"client_id"`
	ClientHost string  `json:"client_host"`
}

// GroupDescription is a group's state, members and committed positions with their lag.
type GroupDescription struct {
	Group        string        `json:"group"`
	State        string        `json:"state"`
	ProtocolType string        `json:"protocol_type"`
	Protocol     string        `json:"protocol"`
	Members      []GroupMember `json:"members"`
	Offsets      []GroupLag    `json:"offsets"`
}

// DescribeGroup describes one group; ErrGroupNotFound when it has neither members nor
// committed offsets.
func (s *Server) DescribeGroup(id string) (GroupDescription, error) {
	sum, found, err := s.coord.describe(id)
	if err != nil {
		return GroupDescription{}, fmt.Errorf("describe group %s: %w", id, err)
	}
	if !found {
		return GroupDescription{}, fmt.Errorf("group %q: %w", id, ErrGroupNotFound)
	}
	d := GroupDescription{Group: id, State: sum.state.String(), ProtocolType: sum.protocolType, Protocol: sum.protocol, Members: []GroupMember{}, Offsets: []GroupLag{}}
	for _, m := range sum.members {
		d.Members = append(d.Members, GroupMember{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost})
	}
	for _, l := range s.GroupLags() {
		if l.Group == id {
			d.Offsets = append(d.Offsets, l)
		}
	}
	return d, nil
}

// DeleteGroup deletes a group without members, with its committed offsets.
func (s *Server) DeleteGroup(id string) error {
	switch code := s.coord.deleteGroup(id); code {
	case 0:
		return nil
	case kerr.NonEmptyGroup.Code:
		return fmt.Errorf("group %q: %w", id, ErrGroupNotEmpty)
	case kerr.GroupIDNotFound.Code, kerr.InvalidGroupID.Code:
		return fmt.Errorf("group %q: %w", id, ErrGroupNotFound)
	default:
		return fmt.Errorf("delete group %q: %w", id, kerr.ErrorForCode(code))
	}
}

// OffsetReset says where ResetGroupOffsets moves a group: To is "earliest", "latest" or
// "datetime" (the first record appended at or after Time).
type OffsetReset struct {
	Topic  string // one topic; empty means every topic the group has offsets in
	To     string
	Time   time.Time
	DryRun bool // compute and return the new positions without committing them
}

// ResetGroupOffsets moves a group's committed offsets, in every partition of the
// topic(s), as kafka-consumer-groups --reset-offsets does: only while the group has no
// members (ErrGroupNotEmpty otherwise), all partitions in one durable write. It returns
// the new positions.
func (s *Server) ResetGroupOffsets(id string, r OffsetReset) ([]GroupLag, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: group id required", ErrBadReset)
	}
	switch r.To {
	case "earliest", "latest":
	case "datetime":
		if r.Time.IsZero() {
			return nil, fmt.Errorf("%w: datetime needs a time", ErrBadReset)
		}
	default:
		return nil, fmt.Errorf("%w: to %q: want earliest, latest or datetime", ErrBadReset, r.To)
	}
	// Holding the group's lock keeps members from joining while offsets move.
	g, err := s.coord.lockGroup(id, false)
	if err != nil {
		return nil, err
	}
	if g != nil {
		defer g.mu.Unlock()
		if g.state != stateEmpty || len(g.members) > 0 {
			return nil, fmt.Errorf("group %q is %s with %d members: stop its consumers first: %w", id, g.state, len(g.members), ErrGroupNotEmpty)
		}
	}
	topics := []string{r.Topic}
	if r.Topic == "" {
		stored, err := s.log.GroupOffsets(id)
		if err != nil {
			return nil, err
		}
		topics = topics[:0]
		for _, o := range stored {
			if !slices.Contains(topics, o.Stream) {
				topics = append(topics, o.Stream)
			}
		}
		if len(topics) == 0 {
			return nil, fmt.Errorf("group %q has no committed offsets; name a topic: %w", id, ErrGroupNotFound)
		}
	}
	var offs []log.CommittedOffset
	var out []GroupLag
	for _, topic := range topics {
		st := s.stream(topic)
		if st == nil {
			return nil, fmt.Errorf("%w: unknown topic %q", ErrBadReset, topic)
		}
		for shard := int32(0); shard < st.Shards(); shard++ {
			start, hwm, err := st.Offsets(shard)
			if err != nil {
				return nil, err
			}
			at := start
			switch r.To {
			case "latest":
				at = hwm
			case "datetime":
				if at, _, err = st.OffsetForTime(shard, r.Time.UnixMicro()); err != nil {
					return nil, err
				}
			}
			offs = append(offs, log.CommittedOffset{Stream: topic, Shard: shard, Offset: at, LeaderEpoch: -1})
			out = append(out, GroupLag{Group: id, Topic: topic, Partition: shard, Committed: at, HWM: hwm, Lag: max(hwm-at, 0)})
		}
	}
	if r.DryRun {
		return out, nil
	}
	if err := s.log.CommitOffsets(id, offs); err != nil {
		return nil, fmt.Errorf("reset offsets of %q: %w", id, err)
	}
	s.lg.Info().Str("group", id).Strs("topics", topics).Str("to", r.To).Msg("group offsets reset")
	return out, nil
}
