"""What every stage needs: errors a user can fix, atomic outputs and safe reads, and params.yaml parsed once."""
