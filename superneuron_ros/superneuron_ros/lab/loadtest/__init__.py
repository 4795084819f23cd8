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

"""
`superneuron loadtest`: the node under load, in separate processes over real ROS on loopback.

``processes.py`` starts and measures the processes, ``roles.py`` holds what each helper process
does (camera, plain subscriber, Ask clients, a node with a slow stand-in model), and
``scenarios.py`` runs the scenarios of issue 12 and returns their figures.
"""
