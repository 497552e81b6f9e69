#!/bin/sh
echo sigv2
