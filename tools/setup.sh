#!/usr/bin/env bash
# Copyright 2026 The superneuron_ros Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# Set up (or bring up to date) the development environment: a Python 3.11 virtual environment
# holding the ROS 2 wheels of one distribution (kilted by default, or jazzy), the ML and test
# dependencies, superneuron_interfaces built with plain CMake and installed into it, and
# superneuron_ros installed in editable mode with its executables in lib/superneuron_ros/, where
# `ros2 run` and `ros2 launch` look for them.
#
# Idempotent and fast when nothing changed: each step records a hash of its inputs in
# $VENV/.superneuron-setup/ and is skipped while that hash still matches. An existing venv is
# adopted as it is: satisfied requirements are not reinstalled.
#
# Environment: ROS_DISTRO (kilted, the default, or jazzy), VENV (default: <repo>/.venv for kilted,
# <repo>/.venv-jazzy for jazzy), PYTHON (a Python 3.11 interpreter to create the venv with;
# default: python3.11, then python3), BUILD_DIR (default: <repo>/build, <repo>/build-jazzy).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROS_DISTRO=${ROS_DISTRO:-kilted}
case $ROS_DISTRO in
    kilted) ros_requirements=$ROOT/tools/requirements-ros.txt; suffix='' ;;
    jazzy) ros_requirements=$ROOT/tools/requirements-ros-jazzy.txt; suffix=-jazzy ;;
    *) printf '[setup] error: ROS_DISTRO=%s: the wheel environments are kilted and jazzy; on a ROS 2 install build with colcon instead (README.md, "Install on a robot")\n' "$ROS_DISTRO" >&2
       exit 1 ;;
esac
VENV=${VENV:-$ROOT/.venv$suffix}
BUILD_DIR=${BUILD_DIR:-$ROOT/build$suffix}
STAMPS=$VENV/.superneuron-setup
PY_VERSION=3.11
START=$SECONDS

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# Hash of files and folders (names and contents), of strings after '--', for the step keys.
hash_inputs() {
    local item strings=0
    {
        for item in "$@"; do
            if [[ $item == -- ]]; then strings=1; continue; fi
            if ((strings)); then
                printf 'string %s\n' "$item"
            elif [[ -d $item ]]; then
                (cd "$item" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
                    | LC_ALL=C sort -z | xargs -0 -r sha256sum)
            elif [[ -f $item ]]; then
                sha256sum "$item"
            else
                printf 'missing %s\n' "$item"
            fi
        done
    } | sha256sum | cut -d' ' -f1
}

is_current() { [[ -f $STAMPS/$1 && "$(cat "$STAMPS/$1")" == "$2" ]]; }
mark_current() { mkdir -p "$STAMPS" && printf '%s\n' "$2" >"$STAMPS/$1"; }

pip_opts=(--disable-pip-version-check --progress-bar off)

# 1. The virtual environment: create it, or adopt the one that is there.
if [[ ! -x $VENV/bin/python ]]; then
    base=${PYTHON:-}
    if [[ -z $base ]]; then
        for candidate in python$PY_VERSION python3; do
            if command -v "$candidate" >/dev/null && [[ "$("$candidate" -c \
                'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" == "$PY_VERSION" ]]
            then
                base=$candidate
                break
            fi
        done
    fi
    [[ -n $base ]] || die "no Python $PY_VERSION found: install it, or set PYTHON=/path/to/python$PY_VERSION"
    log "creating $VENV with $(command -v "$base")"
    "$base" -m venv "$VENV"
fi
venv_version=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
    || die "$VENV/bin/python does not run: remove $VENV (make distclean) and run make setup again"
[[ $venv_version == "$PY_VERSION" ]] \
    || die "$VENV has Python $venv_version, the ROS 2 wheels need $PY_VERSION: remove it (make distclean) or set VENV"
# One distribution per venv: installing jazzy's wheels over kilted's (or back) mixes both.
if [[ -f $STAMPS/ros_distro && "$(cat "$STAMPS/ros_distro")" != "$ROS_DISTRO" ]]; then
    die "$VENV holds ROS 2 $(cat "$STAMPS/ros_distro"), not $ROS_DISTRO: leave VENV unset (each distribution has its own) or remove it"
fi
mkdir -p "$STAMPS" && printf '%s\n' "$ROS_DISTRO" >"$STAMPS/ros_distro"
# colcon must not take the ROS packages inside the venv's share/ for workspace packages.
touch "$VENV/COLCON_IGNORE"
site_packages=$VENV/lib/python$PY_VERSION/site-packages

# 2. Python requirements: ML (requirements.txt), the ROS 2 wheels, tests and lint.
requirements=("$ROOT/requirements.txt" "$ros_requirements" "$ROOT/tools/requirements-dev.txt")
key=$(hash_inputs "${requirements[@]}" -- "$venv_version")
if ! is_current requirements "$key"; then
    mkdir -p "$STAMPS"
    pip_log=$STAMPS/pip-install.log
    log "installing Python requirements, ROS 2 $ROS_DISTRO (a few minutes from nothing; log: $pip_log)"
    { "$VENV/bin/python" -m pip install "${pip_opts[@]}" 'pip>=25' 'setuptools>=75' \
      && "$VENV/bin/python" -m pip install "${pip_opts[@]}" -r "$ROOT/requirements.txt" \
            -r "$ros_requirements" -r "$ROOT/tools/requirements-dev.txt"
    } >"$pip_log" 2>&1 || { grep -v 'is ignored: it is neither' "$pip_log" | tail -n 40 >&2
                          die "pip install failed (log: $pip_log)"; }
    "$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
        | grep -E '^(torch|transformers|bitsandbytes|ros-rclpy|numpy) ' | sed 's/^/[setup]   /' \
        || true
    # The wheels were (re)installed: their CMake files need the include fix again.
    "$VENV/bin/python" "$ROOT/tools/fix_ros_cmake.py" --prefix "$VENV"
    mark_current requirements "$key"
else
    log 'Python requirements: up to date'
fi

# 3. superneuron_interfaces: plain CMake build installed into the venv.
key=$(hash_inputs "$ROOT/superneuron_interfaces" "$ros_requirements" \
      -- "$VENV" "$BUILD_DIR")
if ! is_current interfaces "$key" || [[ ! -f $site_packages/superneuron_interfaces/__init__.py ]]
then
    log 'building superneuron_interfaces'
    "$VENV/bin/python" "$ROOT/tools/fix_ros_cmake.py" --prefix "$VENV"
    command -v cmake >/dev/null || die 'cmake is not installed (apt-get install cmake g++)'
    build=$BUILD_DIR/superneuron_interfaces
    rm -rf "$build"
    mkdir -p "$BUILD_DIR"
    touch "$BUILD_DIR/COLCON_IGNORE"
    export AMENT_PREFIX_PATH=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
    cmake -S "$ROOT/superneuron_interfaces" -B "$build" -Wno-dev \
        -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
        -DPython3_EXECUTABLE="$VENV/bin/python3" -DBUILD_TESTING=OFF >"$build.log" 2>&1 \
        || { tail -n 40 "$build.log" >&2; die "configuring superneuron_interfaces failed (log: $build.log)"; }
    { cmake --build "$build" -j "$(nproc)" && cmake --install "$build"; } >>"$build.log" 2>&1 \
        || { tail -n 40 "$build.log" >&2; die "building superneuron_interfaces failed (log: $build.log)"; }
    "$VENV/bin/python" -c 'from superneuron_interfaces.srv import Ask, ListTasks' \
        || die 'superneuron_interfaces was installed but does not import'
    mark_current interfaces "$key"
else
    log 'superneuron_interfaces: up to date'
fi

# 4. superneuron_ros in editable mode: its console scripts on the venv's PATH and, as colcon
#    installs them, in $VENV/lib/superneuron_ros/ (where `ros2 run` and `ros2 launch` look: an
#    editable install ignores setup.cfg's script_dir), its data files in
#    $VENV/share/superneuron_ros (linked, so only a file added to launch/ or config/ reinstalls).
pkg=$ROOT/superneuron_ros
key=$(hash_inputs "$pkg/setup.py" "$pkg/setup.cfg" "$pkg/package.xml" "$pkg/resource" \
      "$ROOT/tools/install_data_files.py" -- "$ROOT" "$(cd "$pkg" && ls -1 launch config 2>/dev/null)")
if ! is_current superneuron_ros "$key" || [[ ! -x $VENV/bin/superneuron ]] \
   || [[ ! -x $VENV/lib/superneuron_ros/superneuron_node ]]; then
    log 'installing superneuron_ros (editable)'
    # (its output is shown only on failure: setuptools warns about every editable install)
    out=$("$VENV/bin/python" -m pip install "${pip_opts[@]}" --no-deps --no-build-isolation \
          -e "$pkg" 2>&1) || { printf '%s\n' "$out" >&2; die 'installing superneuron_ros failed'; }
    # An editable install leaves out data_files (ament index marker, launch, config): link them;
    # and it puts the console scripts in bin/ only: write them to lib/superneuron_ros/ too.
    "$VENV/bin/python" "$ROOT/tools/install_data_files.py" "$pkg/setup.py" --prefix "$VENV"
    mark_current superneuron_ros "$key"
else
    log 'superneuron_ros: up to date'
fi

log "done in $((SECONDS - START)) s: $VENV (ROS 2 $ROS_DISTRO)"
