"""Adapters that put agent frameworks' tool-call approvals through reviewqueue
(toolcalls.py): ``langgraph`` (LangChain's HumanInTheLoopMiddleware and LangGraph
interrupts) and ``openai_agents`` (the OpenAI Agents SDK's ``needs_approval``). Each is
an optional extra: ``pip install "reviewqueue[langgraph]"`` or ``"reviewqueue[openai-agents]"``.
"""
