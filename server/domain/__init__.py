"""Domain logic shared by services: the dataset export, correction sessions'
background work, labels, documents, uids and comment checks."""
