"""Host sampler (`agentwatch sampler`): CPU, memory and network of the agents' processes.

See docs/sampler.md; the component is ``producers.sampler.main``.
"""
