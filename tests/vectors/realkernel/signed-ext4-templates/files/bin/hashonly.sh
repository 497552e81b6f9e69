#!/bin/sh
echo hash only
