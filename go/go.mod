module github.com/ratecard/ratecard/go

go 1.19
