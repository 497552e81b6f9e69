#!/bin/sh
echo signed-one
