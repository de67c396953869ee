//! The leaderboard's web pages: server-rendered HTML with inline SVG charts.
