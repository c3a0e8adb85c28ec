package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/mqstreams/mqstreams/log"
)

func creds(t testing.TB, pw string) Credentials {
	t.Helper()
	c, err := HashPassword(pw, 4)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStoreModes(t *testing.T) {
	open, err := NewStore(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !open.Open() {
		t.Fatal("no users and no anonymous setting: want the open demo mode")
	}
	p, ok := open.Anonymous()
	if !ok || !p.Admin() || !p.CanPublish("a/b") || !p.CanStream("s", OpWrite) {
		t.Fatal("open mode must allow everything")
	}

	refused, err := NewStore(Options{RefuseAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	if refused.Open() || refused.AllowsAnonymous() {
		t.Fatal("allow_anonymous: false with no users must not be the open demo mode")
	}

	alice := User{Name: "alice", Credentials: creds(t, "pw"), Rules: []Rule{
		{Resource: ResTopic, Name: "plant/#", Ops: OpPublish | OpSubscribe},
		StreamRule("telemetry", OpRead|OpWrite|OpAdmin),
		{Resource: ResGroup, Name: "etl-", Prefix: true, Ops: OpRead},
	}}
	closed, err := NewStore(Options{Users: []User{alice}})
	if err != nil {
		t.Fatal(err)
	}
	if closed.Open() {
		t.Fatal("users configured: not open")
	}
	if _, ok := closed.Anonymous(); ok {
		t.Fatal("anonymous allowed without allow_anonymous")
	}
	if _, ok := closed.Authenticate("alice", "wrong"); ok {
		t.Fatal("wrong password accepted")
	}
	if _, ok := closed.Authenticate("bob", "pw"); ok {
		t.Fatal("unknown user accepted")
	}
	a, ok := closed.Authenticate("alice", "pw")
	if !ok {
		t.Fatal("right password refused")
	}
	if _, ok := closed.Authenticate("alice", "pw"); !ok {
		t.Fatal("cached password refused")
	}
	checks := []struct {
		name string
		got  bool
		want bool
	}{
		{"publish plant/x", a.CanPublish("plant/x"), true},
		{"publish other", a.CanPublish("other"), false},
		{"subscribe plant/+/t", a.CanSubscribe("plant/+/t"), true},
		{"subscribe #", a.CanSubscribe("#"), false},
		{"read telemetry", a.CanStream("telemetry", OpRead), true},
		{"read+write telemetry", a.CanStream("telemetry", OpRead|OpWrite), true},
		{"read other", a.CanStream("other", OpRead), false},
		{"group etl-1", a.CanGroup("etl-1", OpRead), true},
		{"group x", a.CanGroup("x", OpRead), false},
		{"delete group etl-1", a.CanGroup("etl-1", OpAdmin), false},
		{"$mqtt group", a.CanGroup("$mqtt/c1/#", OpRead), false},
		{"admin", a.Admin(), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}

	anon, err := NewStore(Options{Users: []User{alice}, AllowAnonymous: true, AnonymousRules: []Rule{{Resource: ResTopic, Name: "public/#", Ops: OpSubscribe}}})
	if err != nil {
		t.Fatal(err)
	}
	ap, ok := anon.Anonymous()
	if !ok || !ap.CanSubscribe("public/x") || ap.CanPublish("public/x") || ap.Admin() {
		t.Fatal("anonymous rules not applied")
	}
}

func TestStorePersistsRunTimeChanges(t *testing.T) {
	dir := t.TempDir()
	l, err := log.Open(log.Options{Dir: dir, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfgUser := User{Name: "root", Credentials: creds(t, "rootpw"), Superuser: true}
	s, err := NewStore(Options{Users: []User{cfgUser}, Entries: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(User{Name: "dev", Credentials: creds(t, "devpw")}); err != nil {
		t.Fatal(err)
	}
	dev, _ := s.Lookup("dev")
	if dev.CanPublish("a") {
		t.Fatal("new user without rules may publish")
	}
	if err := s.AddRules("dev", []Rule{{Resource: ResTopic, Name: "a", Ops: OpPublish}}); err != nil {
		t.Fatal(err)
	}
	if !dev.CanPublish("a") {
		t.Fatal("a rule added at run time does not apply to an open principal")
	}
	if err := s.AddUser(User{Name: "dev", Credentials: creds(t, "x")}); !errors.Is(err, ErrUserExists) {
		t.Fatalf("duplicate add: %v", err)
	}
	if err := s.DeleteUser("root"); !errors.Is(err, ErrConfigUser) {
		t.Fatalf("deleting a config user: %v", err)
	}
	if err := s.SetPassword("dev", creds(t, "newpw")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, err = log.Open(log.Options{Dir: dir, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err = NewStore(Options{Users: []User{cfgUser}, Entries: l})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Authenticate("dev", "devpw"); ok {
		t.Fatal("old password still works after passwd and restart")
	}
	dev, ok := s.Authenticate("dev", "newpw")
	if !ok || !dev.CanPublish("a") {
		t.Fatal("run-time user or its rules lost across restart")
	}
	if err := s.DeleteUser("dev"); err != nil {
		t.Fatal(err)
	}
	if dev.Valid() || dev.CanPublish("a") {
		t.Fatal("a deleted user keeps its grants")
	}
	if _, err := s.RemoveRules(func(string, Rule) bool { return true }); err != nil {
		t.Fatal(err)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := NewLimiter(3, time.Minute)
	l.Now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if !l.Allow("10.0.0.1:1000") {
			t.Fatalf("attempt %d refused", i)
		}
		l.Fail("10.0.0.1:1000")
	}
	if l.Allow("10.0.0.1:2000") {
		t.Fatal("fourth attempt from the same host (other port) allowed")
	}
	if !l.Allow("10.0.0.2:1000") {
		t.Fatal("another host refused")
	}
	now = now.Add(time.Minute)
	if !l.Allow("10.0.0.1:1000") {
		t.Fatal("still refused after the window")
	}
}
