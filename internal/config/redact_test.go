package config

import "testing"

func TestRedactDSN(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"url", "postgres://rw:s3cret@db.example:5432/src?sslmode=require", "postgres://rw:xxxxx@db.example:5432/src?sslmode=require"},
		{"postgresql scheme", "postgresql://rw:s3cret@h/db", "postgresql://rw:xxxxx@h/db"},
		{"url query password", "postgres://rw@h/db?sslmode=disable&password=s3cret", "postgres://rw@h/db?sslmode=disable&password=xxxxx"},
		{"url both passwords", "postgres://u:pw1@h/db?password=pw2&application_name=rw", "postgres://u:xxxxx@h/db?password=xxxxx&application_name=rw"},
		{"url sslpassword", "postgres://u@h/db?sslpassword=k3y", "postgres://u@h/db?sslpassword=xxxxx"},
		{"url encoded key", "postgres://u@h/db?pass%77ord=s3cret", "postgres://u@h/db?pass%77ord=xxxxx"},
		{"url multi host", "postgres://u:pw@h1:5432,h2:5433/db", "postgres://u:xxxxx@h1:5432,h2:5433/db"},
		{"url ipv6", "postgres://u:pw@[::1]:5432/db", "postgres://u:xxxxx@[::1]:5432/db"},
		{"url at in query value", "postgres://u:pw@h/db?application_name=a@b", "postgres://u:xxxxx@h/db?application_name=a@b"},
		{"url question mark in password", "postgres://u:pa?ss@h/db", "postgres://u:xxxxx@h/db"},
		{"url unencoded at in password", "postgres://u:p@ss@h/db", "postgres://u:xxxxx@h/db"},
		{"url unencoded slash in password", "postgres://u:pa/ss@h/db", "postgres://u:xxxxx@h/db"},
		{"url slash in numeric password", "postgres://u:12/34@h/db", "postgres://u:xxxxx@h/db"},
		{"url uppercase scheme", "POSTGRES://u:pw@h/db", "POSTGRES://u:xxxxx@h/db"},
		{"url empty password", "postgres://u:@h/db", "postgres://u:@h/db"},
		{"keyword", "host=h user=u password=s3cret dbname=db", "host=h user=u password=xxxxx dbname=db"},
		{"keyword quoted", "host=h password='p w' user=u", "host=h password=xxxxx user=u"},
		{"keyword quoted escaped quote", `host=h password='it\'s' user=u`, "host=h password=xxxxx user=u"},
		{"keyword spaces around =", "host=h password = s3cret user=u", "host=h password = xxxxx user=u"},
		{"keyword uppercase key", "host=h PASSWORD=s3cret", "host=h PASSWORD=xxxxx"},
		{"keyword sslpassword", "host=h sslpassword=k3y", "host=h sslpassword=xxxxx"},
		{"keyword unquoted space", "host=h password=p w user=u", "host=h password=xxxxx user=u"},
		{"keyword unterminated quote", "host=h password='p w user=u", "host=h password=xxxxx"},
		{"keyword password last", "user=u password=s3cret", "user=u password=xxxxx"},
		{"keyword empty password", "host=h password='' user=u", "host=h password=xxxxx user=u"},
		{"broken scheme", "postgres:/u:s3cret@h/db", "postgres:xxxxx@h/db"},
		{"no password url", "postgres://rw@db.example:5432/src?sslmode=require", "postgres://rw@db.example:5432/src?sslmode=require"},
		{"no password keyword", "host=db.example port=5432 user=rw dbname=src", "host=db.example port=5432 user=rw dbname=src"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactDSN(tt.in); got != tt.want {
				t.Errorf("RedactDSN(%q)\n got  %q\n want %q", tt.in, got, tt.want)
			}
		})
	}
}
