package mapping

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mqstreams/mqstreams/log"
)

// Target is one stream a message goes to, with its shard and record.
type Target struct {
	Stream string
	Shard  int32
	Record log.Record
	// KeyFallback is set when the stream's key expression yielded nothing and its
	// key_fallback gave the key.
	KeyFallback bool
}

// Router finds the streams whose filters match a topic. Route reads an immutable
// snapshot (a topic-filter trie) without locks; changes build a new snapshot, copying
// only the trie nodes on the changed filters' paths, and publish it atomically.
type Router struct {
	mu  sync.Mutex // serialises writers
	cur atomic.Pointer[routeTable]
}

// routeTable is one immutable snapshot of the router.
type routeTable struct {
	root    *node
	streams map[string]*route
	sorted  []string // stream names, sorted
}

// route is a stream as the router uses it.
type route struct {
	def      Definition
	key      KeyExpr
	fallback KeyExpr
	// multi is set when the stream has several filters, so one topic can reach it twice.
	multi bool
}

// node is a trie level. Nodes reachable from a published table are never modified.
type node struct {
	children map[string]*node
	plus     *node
	exact    []*route // filters ending at this level
	hash     []*route // filters ending with '#' after this level
}

// NewRouter returns a router with no streams.
func NewRouter() *Router {
	r := &Router{}
	r.cur.Store(&routeTable{root: &node{}, streams: map[string]*route{}})
	return r
}

func newRoute(def Definition) (*route, error) {
	def.Filters = slices.Clone(def.Filters)
	if err := def.ValidateKafkaOnly(); err != nil {
		return nil, err
	}
	k, err := ParseKey(def.Key)
	if err != nil {
		return nil, fmt.Errorf("stream %q: %w", def.Name, err)
	}
	fb, err := ParseKey(def.keyFallback())
	if err != nil {
		return nil, fmt.Errorf("stream %q: key_fallback: %w", def.Name, err)
	}
	return &route{def: def, key: k, fallback: fb, multi: len(def.Filters) > 1}, nil
}

// Set replaces all streams with defs; nothing changes when any of them is invalid or
// two share a name.
func (r *Router) Set(defs []Definition) error {
	t := &routeTable{root: &node{}, streams: make(map[string]*route, len(defs))}
	for _, def := range defs {
		rt, err := newRoute(def)
		if err != nil {
			return err
		}
		if _, dup := t.streams[rt.def.Name]; dup {
			return fmt.Errorf("stream %q: defined twice", rt.def.Name)
		}
		t.streams[rt.def.Name] = rt
		t.sorted = append(t.sorted, rt.def.Name)
		for _, f := range rt.def.Filters {
			t.root.insertInPlace(f, rt)
		}
	}
	slices.Sort(t.sorted)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.Store(t)
	return nil
}

// Put adds def, or replaces the stream of the same name.
func (r *Router) Put(def Definition) error {
	rt, err := newRoute(def)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cur.Load()
	root := old.root
	prev, exists := old.streams[rt.def.Name]
	if exists {
		for _, f := range prev.def.Filters {
			root = root.without(f, prev)
		}
	}
	for _, f := range rt.def.Filters {
		root = root.with(f, rt)
	}
	if root == nil {
		root = &node{}
	}
	t := &routeTable{root: root, streams: maps.Clone(old.streams), sorted: old.sorted}
	t.streams[rt.def.Name] = rt
	if !exists {
		i, _ := slices.BinarySearch(old.sorted, rt.def.Name)
		t.sorted = slices.Insert(slices.Clip(old.sorted), i, rt.def.Name)
	}
	r.cur.Store(t)
	return nil
}

// Remove deletes the stream name; removing an unknown stream does nothing.
func (r *Router) Remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cur.Load()
	prev, ok := old.streams[name]
	if !ok {
		return
	}
	root := old.root
	for _, f := range prev.def.Filters {
		root = root.without(f, prev)
	}
	if root == nil {
		root = &node{}
	}
	t := &routeTable{root: root, streams: maps.Clone(old.streams)}
	delete(t.streams, name)
	i, _ := slices.BinarySearch(old.sorted, name)
	t.sorted = slices.Delete(slices.Clone(old.sorted), i, i+1)
	r.cur.Store(t)
}

// Definitions returns every stream's definition, sorted by name.
func (r *Router) Definitions() []Definition {
	t := r.cur.Load()
	out := make([]Definition, 0, len(t.sorted))
	for _, name := range t.sorted {
		out = append(out, t.streams[name].definition())
	}
	return out
}

// Definition returns the named stream's definition.
func (r *Router) Definition(name string) (Definition, bool) {
	rt, ok := r.cur.Load().streams[name]
	if !ok {
		return Definition{}, false
	}
	return rt.definition(), true
}

// definition hands out a copy, so callers cannot change the router's filters.
func (rt *route) definition() Definition {
	d := rt.def
	d.Filters = slices.Clone(d.Filters)
	return d
}

// Route appends one Target per stream with a filter matching m.Topic. The key comes
// from the stream's key expression or, when that yields nothing, from its key_fallback
// (the client id by default; Target.KeyFallback tells); key `none` gives a null key and
// shard ConnSeq % shards. The targets share m.Payload and
// one header slice: treat them as read-only.
func (r *Router) Route(m *Message, dst []Target) []Target {
	t := r.cur.Load()
	var buf [16]*route
	hits := t.root.match(m.Topic, strings.HasPrefix(m.Topic, "$"), buf[:0])
	if len(hits) == 0 {
		return dst
	}
	start := len(dst)
	base := ToRecord(m, nil)
next:
	for _, rt := range hits {
		if rt.multi {
			for _, prev := range dst[start:] {
				if prev.Stream == rt.def.Name {
					continue next
				}
			}
		}
		rec := base
		var shard int32
		fellBack := false
		expr := rt.key
		key, ok := keyOf(expr, m, base.Headers)
		if !ok && !expr.None() {
			fellBack, expr = true, rt.fallback
			if key, ok = keyOf(expr, m, base.Headers); !ok && !expr.None() {
				key = []byte(m.ClientID) // the fallback yields nothing either
			}
		}
		if expr.None() {
			shard = int32(m.ConnSeq % uint64(rt.def.Shards))
		} else {
			rec.Key = key
			shard = Shard(key, rt.def.Shards)
		}
		dst = append(dst, Target{Stream: rt.def.Name, Shard: shard, Record: rec, KeyFallback: fellBack})
	}
	return dst
}

// Streams returns how many streams a publish to topic is appended to (the targets
// Route would return), without building any record: a publish that would be dropped
// is counted at this cost.
func (r *Router) Streams(topic string) int {
	t := r.cur.Load()
	var buf [16]*route
	hits := t.root.match(topic, strings.HasPrefix(topic, "$"), buf[:0])
	n := 0
next:
	for i, rt := range hits {
		if rt.multi {
			for _, prev := range hits[:i] {
				if prev.def.Name == rt.def.Name {
					continue next
				}
			}
		}
		n++
	}
	return n
}

// match appends every route whose filter matches topic. Only branches that match the
// topic's levels are visited, so unrelated streams cost nothing. dollar suppresses
// wildcards at the first level ('$' topics).
func (n *node) match(topic string, dollar bool, hits []*route) []*route {
	level, rest, last := cutLevel(topic)
	if !dollar {
		hits = append(hits, n.hash...)
	}
	hits = matchChild(n.children[level], rest, last, hits)
	if !dollar {
		hits = matchChild(n.plus, rest, last, hits)
	}
	return hits
}

// matchChild continues the match in c, which consumed one level; last says the topic
// has no more levels.
func matchChild(c *node, rest string, last bool, hits []*route) []*route {
	if c == nil {
		return hits
	}
	if last {
		// "a/#" also matches "a".
		return append(append(hits, c.exact...), c.hash...)
	}
	return c.match(rest, false, hits)
}

// insertInPlace adds rt under filter, mutating n; only for tables not yet published.
func (n *node) insertInPlace(filter string, rt *route) {
	for rest := filter; ; {
		level, next, last := cutLevel(rest)
		if level == "#" {
			n.hash = append(n.hash, rt)
			return
		}
		var c *node
		if level == "+" {
			if n.plus == nil {
				n.plus = &node{}
			}
			c = n.plus
		} else {
			if n.children == nil {
				n.children = map[string]*node{}
			}
			if c = n.children[level]; c == nil {
				c = &node{}
				n.children[level] = c
			}
		}
		n = c
		if last {
			n.exact = append(n.exact, rt)
			return
		}
		rest = next
	}
}

// with returns a copy of n with rt added under filter; n is unchanged.
func (n *node) with(filter string, rt *route) *node {
	return n.edit(filter, func(rs []*route) []*route { return append(slices.Clip(rs), rt) })
}

// without returns a copy of n with rt removed from filter; n is unchanged.
func (n *node) without(filter string, rt *route) *node {
	return n.edit(filter, func(rs []*route) []*route {
		return slices.DeleteFunc(slices.Clone(rs), func(x *route) bool { return x == rt })
	})
}

// edit copies the nodes on filter's path and applies change to the route list the
// filter ends in, dropping nodes left empty. n may be nil (an absent subtree).
func (n *node) edit(filter string, change func([]*route) []*route) *node {
	c := &node{}
	if n != nil {
		*c = *n
	}
	level, rest, last := cutLevel(filter)
	switch {
	case level == "#":
		c.hash = change(c.hash)
	case level == "+":
		c.plus = c.plus.editChild(rest, last, change)
	default:
		child := c.children[level].editChild(rest, last, change)
		c.children = maps.Clone(c.children)
		if child == nil {
			delete(c.children, level)
		} else {
			if c.children == nil {
				c.children = map[string]*node{}
			}
			c.children[level] = child
		}
	}
	if c.empty() {
		return nil
	}
	return c
}

// editChild applies an edit to the child node reached by one level; nil when it ends empty.
func (n *node) editChild(rest string, last bool, change func([]*route) []*route) *node {
	if !last {
		return n.edit(rest, change)
	}
	c := &node{}
	if n != nil {
		*c = *n
	}
	c.exact = change(c.exact)
	if c.empty() {
		return nil
	}
	return c
}

func (n *node) empty() bool {
	return len(n.children) == 0 && n.plus == nil && len(n.exact) == 0 && len(n.hash) == 0
}

// keyOf is expr.Eval(m), except that a key which is an MQTT field the record's headers
// already hold (the topic or one of its levels, the client id, the user name) is a
// slice of that header's value instead of another copy: one allocation less per publish
// for the usual keys. Neither is ever written to once built.
func keyOf(expr KeyExpr, m *Message, hs []log.Header) ([]byte, bool) {
	name, field := "", ""
	switch expr.kind {
	case keyTopic, keyTopicLevel:
		name, field = HeaderTopic, m.Topic
	case keyClientID:
		name, field = HeaderClientID, m.ClientID
	case keyUsername:
		name, field = HeaderUsername, m.Username
	default:
		return expr.Eval(m)
	}
	start, end := 0, len(field)
	if expr.kind == keyTopicLevel {
		var ok bool
		if start, end, ok = levelSpan(field, expr.level); !ok {
			return nil, false
		}
	}
	if start == end {
		return nil, false
	}
	for _, h := range hs {
		if h.Key == name && len(h.Value) == len(field) {
			return h.Value[start:end:end], true
		}
	}
	return expr.Eval(m)
}
